"""Task API: preprocessing of real small videos, windowing, stitching, output formats, bad input."""

from __future__ import annotations

import types

import numpy as np
import pytest

from egom2p import geometry as geo
from egom2p import tasks as T
from egom2p.modalities import get_registry
from egom2p.tasks.inputs import token_grid_frame
from egom2p.video import decode, encode_h264, probe, token_frame_indices
from tests.factories import moving_pattern, walk_trajectory


@pytest.fixture(scope="module")
def video_25fps(tmp_path_factory):
    """3.2 s at 25 FPS, 96x72 (landscape: centre crop matters)."""
    path = tmp_path_factory.mktemp("vid") / "in.mp4"
    frames = moving_pattern(80, 72, 96, seed=3)
    frames[:, :, :12] = 0  # a black band on the left that the centre crop removes
    encode_h264(frames, fps=25, path=path)
    return path


def test_load_video_resamples_to_30fps_and_crops(video_25fps):
    v = T.load_video(video_25fps, 32)
    info = probe(video_25fps)
    assert info.fps == pytest.approx(25)
    # 80 frames at 25 FPS span 3.16 s -> floor(3.16 * 30 + 0.5) + 1 = 96 frames on the 30 FPS timeline
    assert v.frames.shape == (96, 32, 32, 3) and v.frames.dtype == np.uint8
    assert np.allclose(np.diff(v.times), 1 / 30)
    assert v.source_size == (96, 72)
    # nearest-timestamp resampling: 30 FPS frame 6 (0.2 s) is the 25 FPS frame 5 (0.2 s)
    src = decode(video_25fps, [5])
    from egom2p.video import center_crop_resize

    assert np.abs(v.frames[6].astype(int) - center_crop_resize(src, 32)[0].astype(int)).mean() < 1
    assert v.frames[:, :, 0].mean() > 20  # black band cropped away


def test_window_starts_cover_every_frame():
    assert T.window_starts(60) == [0]
    assert T.window_starts(120) == [0, 60]
    assert T.window_starts(95) == [0, 35]
    assert T.window_starts(200, stride=56) == [0, 56, 112, 140]
    with pytest.raises(T.TaskInputError, match="shorter than one window"):
        T.window_starts(59)


def test_short_and_corrupt_videos_are_refused(tmp_path):
    short = tmp_path / "short.mp4"
    encode_h264(moving_pattern(40, 32, 32), fps=30, path=short)
    with pytest.raises(T.TaskInputError, match=r"short\.mp4.*40 frames.*needs 60 frames"):
        T.load_video(short, 32)
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(T.TaskInputError, match=r"corrupt\.mp4"):
        T.load_video(bad, 32)
    with pytest.raises(T.TaskInputError, match=r"missing\.mp4.*not found"):
        T.load_video(tmp_path / "missing.mp4", 32)


def _windows_of(traj: np.ndarray, starts: list[int]) -> np.ndarray:
    return np.stack([geo.relative_to_first(traj[s:s + 60]) for s in starts])


def test_stitch_camera_recovers_the_global_trajectory():
    traj = geo.relative_to_first(walk_trajectory(150, seed=2))
    starts = T.window_starts(150, stride=T.TASKS["camera"].stride)
    assert starts == [0, 59, 90]  # windows share a frame; the last one ends on the last frame
    out = T.stitch_camera(_windows_of(traj, starts), starts, 150)
    assert np.allclose(out, traj, atol=1e-9)
    with pytest.raises(ValueError, match="shares no frame"):
        T.stitch_camera(_windows_of(traj, [0, 60, 90]), [0, 60, 90], 150)


def test_stitch_frames_and_video_indices():
    n = 95
    starts = T.window_starts(n)
    per_frame = np.arange(n, dtype=float)[:, None].repeat(2, 1)
    windows = np.stack([per_frame[s:s + 60] for s in starts])
    assert np.array_equal(T.stitch_frames(windows, starts, n), per_frame)
    tidx = token_frame_indices()
    starts, pad = T.video_window_starts(n, 60, overlap=False)
    assert starts == [0, 60] and pad == 25  # the last window reaches past the video: padded, outputs dropped
    vids = np.stack([(s + tidx).astype(float)[:, None, None] * np.ones((16, 4, 4)) for s in starts])
    frames, idx = T.stitch_video(vids, starts, n)
    assert idx[0] == 0 and idx[-1] == 94 and np.all(idx < n)
    assert np.array_equal(idx, token_grid_frame(np.arange(len(idx))))  # one even 8 FPS timeline, no interleaving
    assert np.allclose(frames[:, 0, 0], idx)  # each output frame is the one shown at that index
    with pytest.raises(ValueError, match="off the 8 FPS token grid"):
        T.stitch_video(vids, [0, 35], n)


def test_video_windows_overlap_and_keep_the_8fps_grid():
    """Issue 15 (6b): every depth window shares token frames with the previous one, all frames stay on one
    even 8 FPS timeline, and every token frame inside the video is covered, for any video length."""
    tidx = token_frame_indices()
    assert T.video_window_starts(60, 45, overlap=True) == ([0], 0)
    for n in range(60, 400, 7):
        starts, pad = T.video_window_starts(n, T.TASKS["depth"].stride, overlap=True)
        covered = set()
        for a, b in zip(starts, starts[1:]):
            assert len(set(a + tidx) & set(b + tidx)) >= 1
        for s in starts:
            covered |= set((s + tidx).tolist())
        grid = token_grid_frame(np.arange(200))
        assert set(grid[grid < n].tolist()) <= covered and covered <= set(grid.tolist())
        assert starts[-1] + 60 == n + pad and 0 <= pad < 60
    with pytest.raises(T.TaskInputError, match="no shared token frame"):
        T.video_window_starts(200, 60, overlap=True)
    with pytest.raises(T.TaskInputError, match="multiple of 15"):
        T.video_window_starts(200, 56, overlap=True)


def test_stitch_video_aligns_overlapping_depth_windows():
    # one depth video (inverse depth) seen by two windows that each normalise it differently
    rng = np.random.default_rng(0)
    starts = [0, 45]
    tidx = token_frame_indices()
    frames = {int(f): rng.uniform(0.2, 1.0, (4, 4)) for s in starts for f in s + tidx}
    w0 = np.stack([frames[int(f)] for f in tidx])
    w1 = np.stack([frames[int(45 + f)] for f in tidx]) * 0.5 + 0.1  # another affine normalisation
    out, idx = T.stitch_video(np.stack([w0, w1]), starts, align_inverse_depth=True)
    assert np.allclose(out, np.stack([frames[int(i)] for i in idx]), atol=1e-9)
    # a window that shares no token frame with the earlier ones is an error, not a silent skip
    with pytest.raises(ValueError, match="shares no token frame"):
        T.stitch_video(np.stack([w0, w1]), [0, 60], align_inverse_depth=True)


class _WallRunner(T.TaskRunner):
    """Each window 'predicts' the wall's inverse depth under its own affine normalisation (as per-window models do)."""

    def __init__(self, wall):
        super().__init__(model=None, registry=get_registry("tiny"), tokenizers={})
        self.wall, self.calls = wall, 0

    def run(self, task, inputs, batch_size=8, timing=None, progress=False):
        n = len(inputs["rgb"])
        rng = np.random.default_rng(self.calls)
        self.calls += 1
        scale, shift = rng.uniform(0.3, 2.0, n), rng.uniform(-0.5, 0.5, n)
        return np.stack([np.repeat((a * self.wall + b)[None], 16, 0) for a, b in zip(scale, shift)]).astype(np.float32)


@pytest.mark.parametrize("wall", ["flat", "slanted"])
def test_long_video_depth_of_a_constant_wall_has_one_scale(tmp_path, wall):
    """Issue 15 (6b): a constant-depth wall stitched from several windows stays constant (one scale)."""
    S = get_registry("tiny")["rgb"].image_size
    yy = np.mgrid[0:S, 0:S][0] / S
    inv = np.full((S, S), 0.4) if wall == "flat" else 0.2 + 0.6 * yy  # a fronto-parallel or a slanted wall
    video = tmp_path / "wall.mp4"
    encode_h264(moving_pattern(212, 32, 32), fps=30, path=video)  # 7 s: several windows
    res = T.run_task(_WallRunner(inv), "depth", video=video, progress=False)
    assert len(res.starts) >= 4 and res.padding > 0
    assert np.array_equal(res.frame_index, token_grid_frame(np.arange(len(res.frame_index))))
    assert res.frame_index[-1] <= 211 < res.frame_index[-1] + 4
    d = res.prediction
    assert np.allclose(d, d[:1], atol=1e-5)  # the same map in every frame: no window kept its own scale
    if wall == "slanted":
        assert d.min() == pytest.approx(0.0, abs=1e-6) and d.max() == pytest.approx(1.0, abs=1e-6)


def test_load_depth_and_windows(tmp_path):
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.5, 4.0, size=(70, 24, 32)).astype(np.float32)
    depth[:, 0, 0] = 0  # invalid
    p = tmp_path / "d.npy"
    np.save(p, depth)
    d = T.load_depth(p, 16)
    assert d.inverse.shape == (70, 16, 16) and d.metric
    assert np.nanmax(d.inverse) <= 2.0 + 1e-6 and np.nanmin(d.inverse) >= 0.25 - 1e-6
    w = T.depth_windows(d, T.window_starts(70))
    assert w.shape == (2, 60, 16, 16) and np.nanmin(w) == 0 and np.nanmax(w) == 1
    np.save(tmp_path / "short.npy", depth[:30])
    with pytest.raises(T.TaskInputError, match="short.npy.*30 frames"):
        T.load_depth(tmp_path / "short.npy", 16)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(T.TaskInputError, match="bad.npy.*cannot read depth"):
        T.load_depth(tmp_path / "bad.npy", 16)


def test_registry_mismatch_is_refused():
    base, tiny = get_registry("base"), get_registry("tiny")
    toks = {m: types.SimpleNamespace(spec=tiny[m]) for m in tiny.names}
    T.check_registries(tiny, toks, "ck", "tok")  # same registry: fine
    with pytest.raises(T.TaskInputError, match=r"registry mismatch: checkpoint ck.*'base'.*tokenizer in tok"):
        T.check_registries(base, toks, "ck", "tok")


def test_outputs_in_common_formats(tmp_path, video_25fps):
    from egom2p.video import probe as vprobe

    v = T.load_video(video_25fps, 32)
    n = len(v.frames)
    traj = geo.relative_to_first(walk_trajectory(n))
    cam = T.TaskResult("camera", traj, np.arange(n), np.arange(n) / 30, [0, n - 60], T.Timing(), video=v)
    paths = T.write_outputs(cam, tmp_path / "cam")
    times, back = T.read_tum(paths["tum"])
    assert np.allclose(back, traj, atol=1e-6) and np.allclose(times, np.arange(n) / 30)
    assert (tmp_path / "cam" / "trajectory.png").stat().st_size > 5000

    gaze = np.tile([0.25, 0.75], (n, 1)).astype(np.float32)
    gaze[3] = np.nan
    res = T.TaskResult("gaze", gaze, np.arange(n), np.arange(n) / 30, [0], T.Timing(), video=v)
    paths = T.write_outputs(res, tmp_path / "gaze")
    lines = open(paths["csv"]).read().splitlines()
    assert lines[0] == "frame,time_s,x,y,x_px,y_px,valid" and len(lines) == n + 1
    assert lines[1].split(",")[2:4] == ["0.250000", "0.750000"] and lines[4].endswith(",0")
    assert vprobe(paths["overlay"]).num_frames == n
    over = decode(paths["overlay"], [0])[0].astype(int)
    assert np.abs(over - v.frames[0]).sum() > 0  # something drawn

    depth = np.random.default_rng(0).uniform(0, 1, (20, 16, 16)).astype(np.float32)
    res = T.TaskResult("depth", depth, np.arange(20) * 4, np.arange(20) * 4 / 30, [0], T.Timing(), video=v)
    paths = T.write_outputs(res, tmp_path / "depth")
    assert np.array_equal(np.load(paths["npy"]), depth)
    info = vprobe(paths["video"])
    assert info.num_frames == 20 and info.fps == pytest.approx(8)

    rgb = moving_pattern(16, 32, 32)
    res = T.TaskResult("rgb", rgb, token_frame_indices(), token_frame_indices() / 30, [0], T.Timing())
    paths = T.write_outputs(res, tmp_path / "rgb")
    assert vprobe(paths["video"]).num_frames == 16


def test_gpu_inference_check_runs_in_smoke_mode():
    """benchmarks/gpu/check_inference.py --smoke: the real task path with tiny sizes on CPU, JSON lines out."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu" / "check_inference.py"), "--smoke",
                           "--tasks", "camera", "depth"], capture_output=True, text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    got = {x["metric"]: x for x in lines}
    assert all(set(x) == {"check", "metric", "value", "unit"} and x["check"] == "inference" for x in lines)
    assert got["camera_s_per_seq"]["value"] > 0 and got["depth_s_per_seq"]["value"] > 0
    assert got["camera_paper_s_per_seq"]["value"] == 0.18 and got["depth_paper_s_per_seq"]["value"] == 0.8


def test_ground_truth_beside_a_camera_prediction(tmp_path, video_25fps):
    """Issue 15 (6e): `predict camera --gt TUM_FILE | CLIP_ID` matches, aligns, scores and plots the ground truth."""
    from egom2p.clips import write_clips
    from tests.factories import make_clip

    n = 150
    truth = geo.relative_to_first(walk_trajectory(n, seed=7))
    G = geo.make_se3(np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), [3.0, -1.0, 0.5])
    pred = np.einsum("ij,njk->nik", G, truth)
    pred[:, :3, 3] *= 0.5  # the prediction is the truth in another frame, at half the scale: Sim(3) removes it
    tum = tmp_path / "truth.tum"
    T.write_tum(tum, 100.0 + np.arange(0, n, 2) / 30, truth[::2])  # 15 Hz ground truth, absolute timestamps
    ref = T.reference_trajectory(pred, tum)
    assert np.array_equal(ref["frames"], np.arange(0, n, 2)) and ref["alignment"] == "sim3"
    assert ref["errors"]["ate"] == pytest.approx(0.0, abs=1e-6) and ref["errors"]["rre"] == pytest.approx(0.0, abs=1e-4)
    assert np.allclose(ref["aligned_prediction"][:, :3, 3], ref["poses"][:, :3, 3], atol=1e-6)
    assert T.reference_trajectory(pred, tum, alignment="se3")["errors"]["ate"] > 0.1  # the scale is wrong
    # a clip of the video's sequence: its start frame places it on the video
    clip = make_clip(sequence="walk", start=30, seed=1, modalities=("cam",))
    clip.cam = geo.relative_to_first(truth[30:90]).astype(np.float32)
    write_clips(tmp_path / "c.lance", [clip])
    ref = T.reference_trajectory(pred, clip.clip_id, [tmp_path / "c.lance"])
    assert np.array_equal(ref["frames"], np.arange(30, 90)) and ref["errors"]["ate"] == pytest.approx(0, abs=1e-5)
    assert ref["source"] == f"clip {clip.clip_id}"
    with pytest.raises(T.TaskInputError, match="no such clip"):
        T.reference_trajectory(pred, "egogen/nope/000000", [tmp_path / "c.lance"])
    with pytest.raises(T.TaskInputError, match="--gt-clips"):
        T.reference_trajectory(pred, "egogen/walk/000030")
    (tmp_path / "bad.tum").write_text("1 2 3\n")
    with pytest.raises(T.TaskInputError, match="bad.tum: TUM lines need 8 numbers"):
        T.reference_trajectory(pred, tmp_path / "bad.tum")
    # the plot shows both: it differs from the plot of the prediction alone
    v = T.load_video(video_25fps, 32)
    res = T.TaskResult("camera", pred[:96], np.arange(96), np.arange(96) / 30, [0, 36], T.Timing(), video=v)
    alone = T.write_outputs(res, tmp_path / "alone")["plot"]
    res.reference = T.reference_trajectory(res.prediction, tum)
    both = T.write_outputs(res, tmp_path / "both")["plot"]
    assert open(alone, "rb").read() != open(both, "rb").read()
    assert (tmp_path / "both" / "trajectory.png").stat().st_size > 5000


class _EchoRunner(T.TaskRunner):
    """RGB 'synthesis' that paints each token frame with its window's depth mean (checks windows and stitching)."""

    def __init__(self):
        super().__init__(model=None, registry=get_registry("tiny"), tokenizers={})

    def run(self, task, inputs, batch_size=8, timing=None, progress=False):
        d = np.nan_to_num(inputs["depth"][:, token_frame_indices()], nan=0.0)  # [W, 16, S, S]
        return np.repeat((d * 255).astype(np.uint8)[..., None], 3, -1)


def test_predict_rgb_from_a_long_depth_video_keeps_the_8fps_grid(tmp_path):
    depth = np.linspace(1.0, 3.0, 130, dtype=np.float32)[:, None, None] * np.ones((130, 24, 24), np.float32)
    depth[:, :, :12] *= 2  # two surfaces, so each window normalises to [0, 1]
    np.save(tmp_path / "d.npy", depth)
    res = T.run_task(_EchoRunner(), "rgb", depth=tmp_path / "d.npy", progress=False)
    assert res.starts == [0, 60, 120] and res.padding == 50  # 130 frames: the last window repeats the last frame
    assert np.array_equal(res.frame_index, token_grid_frame(np.arange(len(res.frame_index))))
    S = get_registry("tiny")["rgb"].image_size
    assert res.frame_index[-1] == 128 and res.prediction.shape[1:] == (S, S, 3)
    paths = T.write_outputs(res, tmp_path / "out")
    assert probe(paths["video"]).num_frames == len(res.frame_index)
