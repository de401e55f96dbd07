"""Aria-family adapters (EgoExo4D, HOT3D Aria/Quest, ADT, ASE) on miniature trees in their real layouts.

Each fixture tree is written from a known ground truth (tests/fixtures/*); the tests check that
adapter + standardize recover it: relative camera poses (rotation < 0.01 deg, translation < 1e-4 m),
gaze (< 1e-3 normalised where valid, NaN where tracking was lost) and depth where present.
"""

from __future__ import annotations

import numpy as np
import pytest

from egom2p import geometry as geo
from egom2p.adapters import SourceError, get_adapter
from egom2p.clips import read_clips, write_clips
from egom2p.standardize import clip_starts, standardize, standardize_gaze

ROT_TOL_DEG = 0.01
MIN_PSNR = 30.0  # frames shown at a timeline step are the source frame it maps to (JPEG/H.264 noise only)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))
TRANS_TOL_M = 1e-4
GAZE_TOL = 1e-3


def angle_deg(R: np.ndarray) -> np.ndarray:
    """Rotation angle of (..., 3, 3), accurate near 0 (atan2 of the skew part and the trace)."""
    v = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    return np.degrees(np.arctan2(np.linalg.norm(v, axis=-1) / 2, (np.trace(R, axis1=-2, axis2=-1) - 1) / 2))


def assert_relative_poses(cam: np.ndarray, c2w_truth: np.ndarray, valid: np.ndarray) -> None:
    """cam [60,4,4] (relative to frame 0) vs the truth's absolute poses of the same window."""
    rel = geo.relative_to_first(c2w_truth)
    dR = angle_deg(np.einsum("nji,njk->nik", cam[:, :3, :3].astype(np.float64), rel[:, :3, :3]))
    dt = np.linalg.norm(cam[:, :3, 3].astype(np.float64) - rel[:, :3, 3], axis=-1)
    assert dR[valid].max() < ROT_TOL_DEG, dR.max()
    assert dt[valid].max() < TRANS_TOL_M, dt.max()


def assert_gaze(gaze: np.ndarray, gaze_px_truth: np.ndarray, width: int, height: int, size: int) -> None:
    truth = standardize_gaze(gaze_px_truth, width, height, size)
    assert np.array_equal(np.isnan(gaze[:, 0]), np.isnan(truth[:, 0]))
    ok = np.isfinite(truth[:, 0])
    if ok.any():
        assert np.abs(gaze[ok] - truth[ok]).max() < GAZE_TOL


# --- EgoExo4D ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def egoexo(tmp_path_factory):
    from fixtures.egoexo4d import make_egoexo4d_tree

    root = tmp_path_factory.mktemp("egoexo4d")
    return root, make_egoexo4d_tree(root)


def test_egoexo4d_discover(egoexo):
    root, _ = egoexo
    refs = get_adapter("egoexo4d").discover(root)
    assert [r.sequence for r in refs] == ["cmu_bike01_2", "cmu_bike01_3", "iiith_cooking_01_1", "iiith_cooking_01_4"]
    assert {r.sequence: r.split for r in refs}["iiith_cooking_01_1"] == "val"  # annotations/splits.json


def test_egoexo4d_recovers_truth(egoexo, tmp_path):
    root, truth = egoexo
    ad = get_adapter("egoexo4d")
    refs = {r.sequence: r for r in ad.discover(root)}
    clips = []
    for name in ("cmu_bike01_2", "iiith_cooking_01_1"):
        seq = ad.load(refs[name])
        tr = truth[name]
        n = seq.num_frames
        assert n == tr["num_frames"]  # the video's extra frame is dropped
        assert np.array_equal(seq.frame_valid, tr["frame_valid"][:n])  # empty timesync cells
        assert seq.camera_model == "fisheye624" and seq.distortion.shape == (12,)
        assert seq.intrinsics[0] == seq.intrinsics[1]
        shown = seq.read_frames(np.arange(n))
        assert shown.shape == (n, 64, 64, 3)
        assert min(psnr(shown[i], tr["frames"][i]) for i in range(n)) > MIN_PSNR  # frame i of the video
        for s in clip_starts(n):
            clip = standardize(seq, s, size=64)
            w = slice(s, s + 60)
            assert_relative_poses(clip.cam, tr["c2w"][w], tr["frame_valid"][w] & tr["frame_valid"][s])
            assert_gaze(clip.gaze, tr["gaze_px"][w], seq.width, seq.height, 64)
            clips.append(clip)
    lost = truth["cmu_bike01_2"]["gaze_px"]
    assert np.isnan(lost[:, 0]).sum() > 10  # the fixture's tracking-lost hole is checked above
    out = tmp_path / "egoexo4d.lance"
    assert write_clips(out, clips) == len(clips) == 3
    back = read_clips(out)
    assert sorted(c.clip_id for c in back) == sorted(c.clip_id for c in clips)


def test_egoexo4d_bad_takes(egoexo):
    root, _ = egoexo
    ad = get_adapter("egoexo4d")
    refs = {r.sequence: r for r in ad.discover(root)}
    with pytest.raises(SourceError, match="unsynchronisable.*40 frames.*70"):
        ad.load(refs["cmu_bike01_3"])
    with pytest.raises(SourceError, match="closed_loop_trajectory.csv: missing"):
        ad.load(refs["iiith_cooking_01_4"])


# --- HOT3D (Aria and Quest 3), HOT3D-Clips layout -------------------------------------------------------


@pytest.fixture(scope="module")
def hot3d_clips(tmp_path_factory):
    from fixtures.hot3d import make_hot3d_clips_tree

    root = tmp_path_factory.mktemp("hot3d_clips")
    return root, make_hot3d_clips_tree(root)


@pytest.mark.parametrize("dataset,names", [
    ("hot3d_aria", ["test_aria/clip-000003", "train_aria/clip-000001", "train_aria/clip-000002"]),
    ("hot3d_quest", ["train_quest3/clip-000004"]),
])
def test_hot3d_clips_recover_truth(hot3d_clips, dataset, names):
    root, truth = hot3d_clips
    ad = get_adapter(dataset)
    assert ad.default_depth == "rollingdepth"
    refs = {r.sequence: r for r in ad.discover(root)}
    assert sorted(refs) == names
    assert refs[names[0]].split == ("test" if dataset == "hot3d_aria" else "train")
    for name in names:
        if name.startswith("test_aria"):
            continue
        seq = ad.load(refs[name])
        tr = truth[name]
        assert seq.num_frames == tr["num_frames"]
        assert np.array_equal(seq.frame_valid, tr["frame_valid"])
        assert (seq.width, seq.height) == tr["size"]
        shown = seq.read_frames(np.arange(seq.num_frames))
        want = tr["frames"][tr["frame_src"]]
        if dataset == "hot3d_quest":  # the gray JPEGs were written from the pattern's channel mean
            want = want.mean(-1).astype(np.uint8)
        ok = tr["frame_valid"]
        assert min(psnr(shown[i], want[i]) for i in np.nonzero(ok)[0]) > MIN_PSNR
        frames = shown[:3]
        if dataset == "hot3d_quest":
            assert seq.is_gray and frames.shape == (3, 64, 80) and seq.gaze_px is None
        else:
            assert not seq.is_gray and frames.shape == (3, 64, 64, 3)
        assert seq.camera_model == "fisheye624" and seq.distortion.shape == (12,)
        for s in clip_starts(seq.num_frames):
            clip = standardize(seq, s, size=64)
            w = slice(s, s + 60)
            assert_relative_poses(clip.cam, tr["c2w"][w], tr["frame_valid"][w])
            assert clip.is_gray == (dataset == "hot3d_quest")
            assert clip.rgb.shape == (60, 64, 64, 3)


# --- ASE (evaluation: depth -> RGB) -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ase_tree(tmp_path_factory):
    from fixtures.ase import make_ase_tree

    root = tmp_path_factory.mktemp("ase")
    return root, make_ase_tree(root)


def test_ase_recovers_truth(ase_tree, tmp_path):
    from egom2p.standardize import DepthAnnotation

    root, truth = ase_tree
    ad = get_adapter("ase")
    refs = {r.sequence: r for r in ad.discover(root)}
    assert sorted(refs) == ["test/20", "train/83788", "train/99"] and refs["test/20"].split == "test"
    seq = ad.load(refs["train/83788"])
    tr = truth["train/83788"]
    assert seq.num_frames == 3 * (tr["n_source"] - 1) + 1  # 10 FPS source on the 30 FPS timeline
    assert np.array_equal(np.nonzero(seq.frame_valid)[0], np.arange(0, seq.num_frames, 3))
    src = np.arange(seq.num_frames)
    src = (src + 1) // 3  # nearest 10 FPS frame of each slot
    shown = seq.read_frames(np.arange(seq.num_frames))
    assert min(psnr(shown[i], tr["frames"][src[i]]) for i in range(seq.num_frames)) > MIN_PSNR
    d = seq.read_depth(np.array([0, 3, 30]))
    for k, i in enumerate([0, 3, 30]):
        z = d[k]
        assert np.all(z[:6, :10] == 0)  # holes stay invalid
        assert np.abs(z[6:] - tr["Z"][src[i]]).max() < 1e-3  # ray distance (mm) -> z-depth (m)
    clips = []
    for s in clip_starts(seq.num_frames):
        depth = DepthAnnotation(seq.read_depth(np.arange(s, s + 60)), kind="metric", source="sensor")
        clip = standardize(seq, s, depth=depth, size=64)
        w = np.arange(s, s + 60)
        assert_relative_poses(clip.cam, tr["c2w"][src[w]], np.ones(60, bool))
        lo, hi = clip.depth_range
        assert abs(1 / hi - tr["Z"][src[w]].min()) < 2e-3 and abs(1 / lo - tr["Z"][src[w]].max()) < 2e-3
        clips.append(clip)
    assert write_clips(tmp_path / "ase.lance", clips) == 2
    assert ad.load(refs["test/20"]).read_depth is None
    with pytest.raises(SourceError, match="trajectory.csv: unsynchronisable: 24 poses for 25 images"):
        ad.load(refs["train/99"])


# --- the curate run on each fixture tree (in process, serial engine) ----------------------------------------


def curate_serial(name: str, raw, out, depth: str, size: int = 64):
    from egom2p.curate import CurateConfig, CurationRun, read_quarantine

    cfg = CurateConfig(dataset=name, raw=str(raw), out=str(out), size=size, depth=depth)
    summary = CurationRun(cfg, executor="local").run().to_dict()
    clips = sorted(read_clips(cfg.table_path), key=lambda c: c.clip_id)
    return summary, clips, read_quarantine(cfg.quarantine_path)


def test_curate_egoexo4d(egoexo, tmp_path):
    root, truth = egoexo
    summary, clips, records = curate_serial("egoexo4d", root, tmp_path, "none")
    assert [c.clip_id for c in clips] == ["egoexo4d/cmu_bike01_2/000000", "egoexo4d/cmu_bike01_2/000060",
                                          "egoexo4d/iiith_cooking_01_1/000000"]
    assert {r.sequence: r.source.rsplit("/", 1)[-1] for r in records} == {
        "cmu_bike01_3": "aria01_214-1.mp4", "iiith_cooking_01_4": "closed_loop_trajectory.csv"}
    assert all(r.reason for r in records) and summary["quarantined"] == 2
    for c in clips:
        tr, s = truth[c.sequence], c.start_frame
        assert c.split == ("val" if c.sequence == "iiith_cooking_01_1" else "train")
        assert c.camera_model == "fisheye624" and c.depth is None and c.rgb.shape == (60, 64, 64, 3)
        assert_relative_poses(c.cam, tr["c2w"][s:s + 60], tr["frame_valid"][s:s + 60])
        assert_gaze(c.gaze, tr["gaze_px"][s:s + 60], 64, 64, 64)
        assert np.array_equal(c.frame_valid, tr["frame_valid"][s:s + 60])


@pytest.mark.parametrize("name", ["hot3d_aria", "hot3d_quest"])
def test_curate_hot3d(hot3d_clips, tmp_path, name):
    root, truth = hot3d_clips
    summary, clips, records = curate_serial(name, root, tmp_path, "none")  # default rollingdepth needs a checkpoint
    expected = {"hot3d_aria": ["train_aria/clip-000001/000000", "train_aria/clip-000001/000060",
                               "train_aria/clip-000002/000000"],
                "hot3d_quest": ["train_quest3/clip-000004/000000"]}[name]
    assert [c.clip_id.split("/", 1)[1] for c in clips] == expected
    if name == "hot3d_aria":  # the clip with a path-traversal member is quarantined, naming the tar
        got = [(r.sequence, r.source.rsplit("/", 1)[-1]) for r in records]
        assert got == [("test_aria/clip-000003", "clip-000003.tar")]
        assert "escaped.txt" in records[0].reason
    else:
        assert records == []
    for c in clips:
        tr, s = truth[c.sequence], c.start_frame
        assert_relative_poses(c.cam, tr["c2w"][s:s + 60], tr["frame_valid"][s:s + 60])
        assert c.is_gray == (name == "hot3d_quest") and c.gaze is None


def test_curate_ase_with_sensor_depth(ase_tree, tmp_path):
    root, truth = ase_tree
    summary, clips, records = curate_serial("ase", root, tmp_path, "sensor")
    assert [c.clip_id for c in clips] == ["ase/test/20/000000", "ase/train/83788/000000", "ase/train/83788/000060"]
    # test/20 has no depth (ASE test scenes); train/99 has a missing trajectory row
    assert [(r.sequence, r.source.rsplit("/", 1)[-1]) for r in records] == [("train/99", "trajectory.csv")]
    src = (np.arange(200) + 1) // 3
    assert clips[0].depth is None and clips[0].split == "test"
    for c in clips[1:]:
        s, tr = c.start_frame, truth[c.sequence]
        assert c.depth_source == "sensor" and c.depth.shape == (60, 64, 64)
        z = tr["Z"][src[s:s + 60]]
        assert 1 / z.max() * 0.99 < c.depth_range[0] and c.depth_range[1] < 1 / z.min() * 1.01
        assert_relative_poses(c.cam, tr["c2w"][src[s:s + 60]], np.ones(60, bool))


@pytest.mark.parametrize("name", ["egoexo4d", "hot3d_aria", "hot3d_quest", "adt", "ase"])
def test_cards_describe_their_adapters(name):
    from pathlib import Path

    import yaml

    card = yaml.safe_load((Path(__file__).resolve().parents[1] / "datasets" / f"{name}.yaml").read_text())
    ad = get_adapter(name)
    assert card["name"] == name and card["adapter_version"] == ad.version
    assert card["default_depth"] == ad.default_depth
    assert set(card["modalities"]) == set(ad.modalities)
    assert card["unconfirmed"] and all(u["point"] and u["tolerance"] for u in card["unconfirmed"])
    assert card["licence"] and card["sources"]


# --- bad input: unknown schemas name the file ------------------------------------------------------------


def test_unknown_schemas_are_refused(tmp_path):
    from egom2p.adapters import aria

    traj = tmp_path / "closed_loop_trajectory.csv"
    traj.write_text("graph_uid,tracking_timestamp_us,tx,ty,tz\nx,1,0,0,0\n")
    with pytest.raises(SourceError, match="closed_loop_trajectory.csv: unknown closed-loop trajectory schema"):
        aria.read_closed_loop_trajectory(traj)
    head = tmp_path / "headset_trajectory.csv"
    head.write_text("object_uid,timestamp[ns],t_wo_x[m],t_wo_y[m],t_wo_z[m],q_wo_x,q_wo_y,q_wo_z\n1,2,0,0,0,0,0,0\n")
    with pytest.raises(SourceError, match="headset_trajectory.csv: unknown HOT3D headset trajectory schema.*q_wo_w"):
        aria.read_headset_trajectory(head)
    calib = tmp_path / "online_calibration.jsonl"
    calib.write_text('{"version": 2, "cameras": []}\n')
    with pytest.raises(SourceError, match="online_calibration.jsonl: unknown online calibration schema"):
        aria.read_online_calibration(calib)
    with pytest.raises(SourceError, match="missing eye gaze CSV"):
        aria.read_eye_gaze(tmp_path / "nope.csv")
