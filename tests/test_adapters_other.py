"""Adapters of HoloAssist, ARCTIC, TACO, H2O and HOI4D on miniature trees in their real layouts.

Each fixture tree (tests/fixtures/<name>.py) is written from a known ground truth with the
dataset's real file names, formats, units, clocks and axis conventions, plus realistic
irregularities. The tests check that adapter + standardize (and the curation run) recover the truth:
relative poses (rotation < 0.01 deg, translation < 1e-4 m), gaze (< 1e-3 normalised where valid,
NaN where tracking was lost), depth, and that bad sequences are refused with a clear SourceError.
"""

from __future__ import annotations

import numpy as np
import pytest

from egom2p import geometry as geo
from egom2p.adapters import SourceError, get_adapter
from egom2p.clips import read_clips
from egom2p.curate import CurateConfig, CurationRun, read_quarantine
from egom2p.standardize import clip_starts, standardize, standardize_gaze
from fixtures.arctic import make_arctic_tree
from fixtures.h2o import make_h2o_tree
from fixtures.hoi4d import make_hoi4d_tree
from fixtures.holoassist import make_holoassist_tree
from fixtures.taco import make_taco_tree

SIZE = 64
ROT_TOL_DEG = 0.01
TRANS_TOL_M = 1e-4
GAZE_TOL = 1e-3


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle of rotations [..., 3, 3] by atan2(|axis part|, cos part): well conditioned near 0
    (arccos of the trace is not: float32 poses would read as ~0.01 deg off)."""
    s = 0.5 * np.linalg.norm(np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                                       R[..., 1, 0] - R[..., 0, 1]], -1), axis=-1)
    c = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arctan2(s, c))


def assert_relative_poses(cam: np.ndarray, c2w_gt: np.ndarray) -> None:
    """cam: a clip's relative poses [60,4,4]; c2w_gt: absolute ground truth of the same window."""
    rel = geo.relative_to_first(c2w_gt)
    cam = np.asarray(cam, dtype=np.float64)
    dR = np.einsum("nji,njk->nik", cam[:, :3, :3], rel[:, :3, :3])
    assert rotation_angle_deg(dR).max() < ROT_TOL_DEG
    assert np.abs(cam[:, :3, 3] - rel[:, :3, 3]).max() < TRANS_TOL_M


def assert_gaze(gaze: np.ndarray, gaze_px_gt: np.ndarray, width: int, height: int) -> None:
    want = standardize_gaze(gaze_px_gt, width, height, SIZE)
    valid = np.isfinite(want).all(axis=1)
    np.testing.assert_array_equal(np.isfinite(gaze).all(axis=1), valid)
    assert np.abs(gaze[valid] - want[valid]).max() < GAZE_TOL


def psnr(a, b) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def curate_serial(name: str, raw, out, depth: str) -> tuple[dict, list, list]:
    """The curation run in process (serial engine): summary, clips, quarantine records."""
    cfg = CurateConfig(dataset=name, raw=str(raw), out=str(out), size=SIZE, depth=depth)
    summary = CurationRun(cfg, executor="local").run().to_dict()
    clips = sorted(read_clips(cfg.table_path), key=lambda c: c.clip_id)
    return summary, clips, read_quarantine(cfg.quarantine_path)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("raw")
    return {
        "holoassist": (base / "holoassist", make_holoassist_tree(base / "holoassist")),
        "arctic": (base / "arctic", make_arctic_tree(base / "arctic")),
        "taco": (base / "taco", make_taco_tree(base / "taco")),
        "h2o": (base / "h2o", make_h2o_tree(base / "h2o")),
        "hoi4d": (base / "hoi4d", make_hoi4d_tree(base / "hoi4d")),
    }


# ----------------------------------------------------------------------------------- HoloAssist
def test_holoassist_adapter_recovers_poses_gaze_and_timeline(trees):
    root, truth = trees["holoassist"]
    A = get_adapter("holoassist")
    refs = {r.sequence: r for r in A.discover(root)}
    assert {k: r.split for k, r in refs.items()} == {"R001-session": "train", "R002-session": "val",
                                                     "R003-badschema": "train"}
    for name in ("R001-session", "R002-session"):
        gt = truth[name]
        seq = A.load(refs[name])
        assert seq.num_frames == len(gt["c2w"]) and (seq.width, seq.height) == (gt["width"], gt["height"])
        np.testing.assert_allclose(seq.intrinsics, gt["K"], atol=1e-9)
        # pose rows before/after the video are trimmed, the dropped pose row is NaN and flagged
        np.testing.assert_array_equal(np.isfinite(seq.c2w).all(axis=(1, 2)), np.isfinite(gt["c2w"]).all(axis=(1, 2)))
        np.testing.assert_array_equal(seq.frame_valid, gt["frame_valid"])
        for s in clip_starts(seq.num_frames):
            clip = standardize(seq, s, size=SIZE)
            assert_relative_poses(clip.cam, gt["c2w"][s:s + 60])
            assert_gaze(clip.gaze, gt["gaze_px"][s:s + 60], gt["width"], gt["height"])
        # the right mp4 frames are on the timeline
        frames = seq.read_frames(np.array([0, 31, 59]))
        assert psnr(frames, gt["frames"][[0, 31, 59]]) > 30
    # eye tracking lost (validity 0) -> invalid gaze; the dropped pose (frame 125) is not usable
    seq = A.load(refs["R001-session"])
    assert np.isnan(seq.gaze_px[30:36]).all() and np.isfinite(seq.gaze_px[36:60]).all()
    with pytest.raises(SourceError, match="non-finite camera pose"):
        standardize(seq, 70, size=SIZE)


def test_holoassist_bad_schema_and_missing_files(trees, tmp_path):
    root, _ = trees["holoassist"]
    A = get_adapter("holoassist")
    bad = next(r for r in A.discover(root) if r.sequence == "R003-badschema")
    with pytest.raises(SourceError, match=r"Pose_sync.txt: line 1 has 12 columns.*unknown Pose_sync schema"):
        A.load(bad)
    make_holoassist_tree(tmp_path / "h", n_frames=62, with_bad_session=False)
    (tmp_path / "h" / "R002-session" / "Export_py" / "Video" / "VideoMp4Timing.txt").unlink()
    ref = next(r for r in A.discover(tmp_path / "h") if r.sequence == "R002-session")
    with pytest.raises(SourceError, match="VideoMp4Timing.txt: missing VideoMp4Timing"):
        A.load(ref)
    # a video timing on another clock (one hour off): no pose falls inside the video
    timing = tmp_path / "h" / "R001-session" / "Export_py" / "Video" / "VideoMp4Timing.txt"
    timing.write_text(f"{int(timing.read_text().split()[0]) + 36_000_000_000}\n")
    ref = next(r for r in A.discover(tmp_path / "h") if r.sequence == "R001-session")
    with pytest.raises(SourceError, match="Pose_sync.txt: no pose tick falls inside the video's time span"):
        A.load(ref)
    with pytest.raises(SourceError, match="no <session>/Export_py"):
        A.discover(tmp_path)


def test_holoassist_ahat_depth_is_read_from_the_tar_in_memory(trees):
    from egom2p.adapters.holoassist import ahat_depth_frames

    root, _ = trees["holoassist"]
    got = dict(ahat_depth_frames(root / "R001-session"))
    assert sorted(got) == [f"AhatDepth/{i:06d}.png" for i in range(3)]
    assert got["AhatDepth/000002.png"].dtype == np.uint16 and int(got["AhatDepth/000002.png"][0, 0]) == 302


# --------------------------------------------------------------------------------------- ARCTIC
def test_arctic_adapter_world_to_camera_ioi_offset_and_distortion(trees):
    root, truth = trees["arctic"]
    A = get_adapter("arctic")
    refs = {r.sequence: r for r in A.discover(root)}
    assert refs["s05/ketchup_use_01"].split == "val" and refs["s01/box_grab_01"].split == "train"
    for name in ("s01/box_grab_01", "s05/ketchup_use_01"):
        gt = truth[name]
        seq = A.load(refs[name])
        assert seq.num_frames == len(gt["c2w"])
        assert seq.camera_model == "opencv_rational"
        np.testing.assert_array_equal(seq.distortion, gt["dist8"])
        np.testing.assert_array_equal(seq.frame_valid, gt["frame_valid"])
        clip = standardize(seq, 0, size=SIZE)
        assert_relative_poses(clip.cam, gt["c2w"][:60])
        assert clip.rgb.shape == (60, SIZE, SIZE, 3) and clip.distortion.shape == (8,)
        # image i is shown at ground-truth frame i - ioi_offset
        probe = np.array([0, 1, 30, len(gt["c2w"]) - 1])
        assert psnr(seq.read_frames(probe), gt["frames"][probe]) > 30
    # image 00040 of s01 (GT frame 37, timeline frame 37) is missing: flagged, nearest image used
    seq = A.load(refs["s01/box_grab_01"])
    assert not seq.frame_valid[37] and seq.frame_valid[36] and seq.frame_valid[38]
    assert psnr(seq.read_frames(np.array([37])), truth["s01/box_grab_01"]["frames"][[37]]) > 30


# ----------------------------------------------------------------------------------------- TACO
def test_taco_adapter_poses_depth_video_and_triplet_names(trees):
    root, truth = trees["taco"]
    A = get_adapter("taco")
    refs = {r.sequence: r for r in A.discover(root)}
    assert set(refs) == {k for k in truth}
    assert refs["(stir, spoon, bowl)/20231105_019"].split == "test"  # official list: test_4
    assert refs["(put out, spoon, plate)/20231024_056"].split == "train"
    name = "(stir, spoon, bowl)/20231105_019"
    gt = truth[name]
    seq = A.load(refs[name])
    clip = standardize(seq, 0, size=SIZE)
    assert clip.clip_id == f"taco/{name}/000000"
    assert_relative_poses(clip.cam, gt["c2w"][:60])
    np.testing.assert_allclose(seq.intrinsics, [gt["K"][0, 0], gt["K"][1, 1], gt["K"][0, 2], gt["K"][1, 2]])
    depth = seq.read_depth(np.arange(2, 62))
    assert depth.dtype == np.float32 and depth.shape == (60, gt["height"], gt["width"])
    np.testing.assert_array_equal(depth, gt["depth_m"][2:62])  # lossless 16-bit mm -> metres
    assert psnr(seq.read_frames(np.array([5, 40])), gt["frames"][[5, 40]]) > 30
    assert A.load(refs["(put out, spoon, plate)/20231024_056"]).read_depth is None


def test_taco_pose_count_mismatch_is_skipped_with_a_clear_reason(trees):
    root, _ = trees["taco"]
    A = get_adapter("taco")
    ref = next(r for r in A.discover(root) if r.sequence.startswith("(brush"))
    with pytest.raises(SourceError, match=r"egocentric_frame_extrinsic.npy: 60 camera poses for 62 video frames"):
        A.load(ref)


# ------------------------------------------------------------------------------------------ H2O
def test_h2o_adapter_splits_poses_depth_and_rgb256(trees):
    root, truth = trees["h2o"]
    A = get_adapter("h2o")
    refs = {r.sequence: r for r in A.discover(root)}
    assert {k: r.split for k, r in refs.items()} == {k: v["split"] for k, v in truth.items()}
    for name, gt in truth.items():
        seq = A.load(refs[name])
        assert (seq.width, seq.height) == (gt["width"], gt["height"])
        np.testing.assert_allclose(seq.intrinsics, gt["K"], atol=1e-9)
        np.testing.assert_array_equal(seq.frame_valid, gt["frame_valid"])
        np.testing.assert_array_equal(np.isfinite(seq.c2w).all(axis=(1, 2)), np.isfinite(gt["c2w"]).all(axis=(1, 2)))
        clip = standardize(seq, 0, size=SIZE)
        assert_relative_poses(clip.cam, gt["c2w"][:60])
        np.testing.assert_array_equal(seq.read_depth(np.arange(0, 60)), gt["depth_m"][:60])
    with pytest.raises(SourceError, match="non-finite camera pose"):
        standardize(A.load(refs["subject3/k2/1"]), 6, size=SIZE)


def test_h2o_missing_intrinsics_names_the_file(trees, tmp_path):
    make_h2o_tree(tmp_path)
    (tmp_path / "subject1" / "h1" / "0" / "cam4" / "cam_intrinsics.txt").unlink()
    A = get_adapter("h2o")
    ref = next(r for r in A.discover(tmp_path) if r.sequence == "subject1/h1/0")
    with pytest.raises(SourceError, match=r"cam4/cam_intrinsics.txt: missing intrinsics"):
        A.load(ref)


# ---------------------------------------------------------------------------------------- HOI4D
def test_hoi4d_adapter_15fps_to_30fps_log_poses_and_depth(trees):
    import open3d as o3d

    from egom2p.adapters.hoi4d import read_trajectory_log

    root, truth = trees["hoi4d"]
    A = get_adapter("hoi4d")
    refs = {r.sequence: r for r in A.discover(root)}
    name = "ZY20210800001/H1/C1/N01/S1/s01/T1"
    gt = truth[name]
    assert refs[name].split == "test"
    seq = A.load(refs[name])
    assert seq.num_frames == len(gt["c2w"]) == 71
    np.testing.assert_array_equal(seq.frame_valid, gt["frame_valid"])  # odd 30 FPS frames repeat a 15 fps one
    clip = standardize(seq, 0, size=SIZE)
    assert_relative_poses(clip.cam, gt["c2w"][:60])
    np.testing.assert_array_equal(seq.read_depth(np.arange(5, 65)), gt["depth_m"][5:65])
    assert psnr(seq.read_frames(np.arange(0, 8)), gt["frames"][0:8]) > 30
    # the .log holds camera-to-world: Open3D's extrinsic (world-to-camera) is its inverse
    log = root / "HOI4D_annotations" / name / "3Dseg" / "output.log"
    traj = o3d.io.read_pinhole_camera_trajectory(str(log))
    ext = np.stack([p.extrinsic for p in traj.parameters])
    np.testing.assert_allclose(geo.w2c_to_c2w(ext), read_trajectory_log(log), atol=1e-9)
    bad = refs["ZY20210800002/H2/C3/N05/S20/s02/T2"]
    with pytest.raises(SourceError, match=r"output.log: 29 poses for 31 frames"):
        A.load(bad)


# ------------------------------------------------------------------------- curation of every tree
CURATE_CASES = {
    # dataset: (depth annotator, expected clips per sequence, quarantined sequences)
    "holoassist": ("none", {"R001-session": [0, 60], "R002-session": [0]}, {"R003-badschema"}),
    "arctic": ("none", {"s01/box_grab_01": [0], "s05/ketchup_use_01": [0]}, {"s02/evil_01", "s02/nokeys_01"}),
    "taco": ("sensor", {"(stir, spoon, bowl)/20231105_019": [0], "(put out, spoon, plate)/20231024_056": [0]},
             {"(brush, brush, box)/20231027_001"}),
    "h2o": (None, {"subject1/h1/0": [0], "subject3/k2/1": [0], "subject4/o1/0": [0]}, set()),
    "hoi4d": (None, {"ZY20210800001/H1/C1/N01/S1/s01/T1": [0]}, {"ZY20210800002/H2/C3/N05/S20/s02/T2"}),
}


@pytest.mark.parametrize("name", list(CURATE_CASES))
def test_curate_writes_clips_matching_ground_truth(trees, tmp_path, name):
    depth, expected, quarantined = CURATE_CASES[name]
    root, truth = trees[name]
    summary, clips, records = curate_serial(name, root, tmp_path, depth)
    got = {}
    for c in clips:
        got.setdefault(c.sequence, []).append(c.start_frame)
    assert got == expected
    assert {r.sequence for r in records} == quarantined
    for r in records:
        assert r.reason and r.source  # the failing file and the problem are named
    for c in clips:
        gt = truth[c.sequence]
        s = c.start_frame
        assert c.split == gt.get("split", "test")  # (HOI4D is evaluation-only: test)
        assert_relative_poses(c.cam, gt["c2w"][s:s + 60])
        if "gaze_px" in gt:
            assert_gaze(c.gaze, gt["gaze_px"][s:s + 60], gt["width"], gt["height"])
        if "frame_valid" in gt:
            np.testing.assert_array_equal(c.frame_valid, gt["frame_valid"][s:s + 60])
        if depth == "none" or gt.get("depth_m", 0) is None:  # (a TACO sequence without its depth video)
            assert c.depth is None
        else:  # sensor depth: metric inverse-depth range of the (cleaned) plane
            d = gt["depth_m"][s:s + 60]
            lo, hi = 1.0 / d[d > 0].max(), 1.0 / d[d > 0].min()
            assert c.depth_source == "sensor" and c.depth.shape == (60, SIZE, SIZE)
            assert lo * 0.97 < c.depth_range[0] and c.depth_range[1] < hi * 1.03
    assert summary["quarantined"] == len(quarantined)


# ---------------------------------------------------------------------------------------- cards
@pytest.mark.parametrize("name", ["holoassist", "arctic", "taco", "h2o", "hoi4d"])
def test_cards_describe_their_adapters(name):
    from pathlib import Path

    import yaml

    card = yaml.safe_load((Path(__file__).resolve().parents[1] / "datasets" / f"{name}.yaml").read_text())
    A = get_adapter(name)
    assert card["name"] == A.name and card["adapter"] == f"egom2p.adapters.{name}"
    assert card["modalities"] == list(A.modalities) and card["default_depth"] == A.default_depth
    assert card["kind"] == ("evaluation" if name == "hoi4d" else "source")
    for key in ("layout", "conventions", "licence", "sources"):
        assert card[key]
    for item in card["unconfirmed"]:  # every UNCONFIRMED point says how the adapter tolerates it
        assert item["point"] and item["tolerance"]
