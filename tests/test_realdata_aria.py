"""Aria readers against real files in ../shared/realdata (read in place, never copied).

The samples are too short for a 2-second clip; they check readers, schemas, clocks, calibration and
gaze reprojection as they really are, and the VRS paths of the ADT and HOT3D adapters (trees that
link the real recording and put ground-truth CSVs around its clock).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from egom2p import geometry as geo
from egom2p.adapters import SourceError, aria, get_adapter

MPS = "aria/mps_sample"
AEA = "aria/aea_test_recording"
HOT3D_ARIA = "hot3d/Aria/P0003_c701bd11"
HOT3D_QUEST = "hot3d/Quest3/P0002_273c2819"


def _first_row(path):
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return next(r)


def test_mps_closed_loop_trajectory(realdata):
    path = realdata / MPS / "trajectory" / "closed_loop_trajectory.csv"
    poses = aria.read_closed_loop_trajectory(path)
    assert len(poses) == 11517
    assert np.all(np.diff(poses.t_ns) > 0)
    assert 900 < 1e9 / np.median(np.diff(poses.t_ns)) < 1100  # 1 kHz
    row = _first_row(path)
    assert poses.t_ns[0] == int(row["tracking_timestamp_us"]) * 1000
    q = [float(row[k]) for k in ("qx_world_device", "qy_world_device", "qz_world_device", "qw_world_device")]
    R = geo.quat_to_matrix(q, order="xyzw")  # MPS: x, y, z, w
    assert np.abs(poses.T[0, :3, :3] - R).max() < 1e-6
    t = [float(row[k]) for k in ("tx_world_device", "ty_world_device", "tz_world_device")]
    assert np.allclose(poses.T[0, :3, 3], t)
    mid = poses.interpolate(poses.t_ns[10:12].mean(keepdims=True), 5e6)[0]
    assert np.linalg.norm(mid[:3, 3] - poses.T[10:12, :3, 3].mean(0)) < 1e-6


def test_hot3d_headset_trajectory_is_w_first(realdata):
    """HOT3D's headset_trajectory.csv (w-first) and its MPS trajectory (x,y,z,w) hold the same first pose."""
    seq = realdata / HOT3D_ARIA
    headset = aria.read_headset_trajectory(seq / "headset_trajectory.csv")
    mps = aria.read_closed_loop_trajectory(seq / "mps" / "slam" / "closed_loop_trajectory.csv")
    assert len(headset) == 68
    assert np.abs(headset.T[0] - mps.T[0]).max() < 1e-6
    # read with the wrong order the rotation would differ
    row = _first_row(seq / "headset_trajectory.csv")
    wrong = geo.quat_to_matrix([float(row[k]) for k in ("q_wo_w", "q_wo_x", "q_wo_y", "q_wo_z")], order="xyzw")
    assert np.abs(wrong - mps.T[0, :3, :3]).max() > 0.1
    quest = aria.read_headset_trajectory(realdata / HOT3D_QUEST / "headset_trajectory.csv")
    assert len(quest) == 15 and np.allclose(np.linalg.det(quest.T[:, :3, :3]), 1)


@pytest.mark.parametrize("rel,rows,has_depth", [
    (f"{MPS}/eye_gaze/generalized_eye_gaze.csv", 123, False),
    (f"{MPS}/eye_gaze/eyegaze.csv", 123, False),
    (f"{MPS}/eye_gaze_vergence/generalized_gaze.csv", 123, True),
    (f"{HOT3D_ARIA}/mps/eye_gaze/general_eye_gaze.csv", 11, True),
    (f"{AEA}/mps/eye_gaze/general_eye_gaze.csv", 4, False),
])
def test_eye_gaze_both_schemas(realdata, rel, rows, has_depth):
    g = aria.read_eye_gaze(realdata / rel)
    assert len(g) == rows
    assert np.all(np.isfinite(g.yaw)) and np.all(np.abs(g.pitch) < np.pi / 2)
    assert np.isfinite(g.depth).all() == has_depth and (has_depth or np.isnan(g.depth).all())
    if "vergence" in rel:  # combined yaw lies between the left and right eye yaws
        row = _first_row(realdata / rel)
        lo, hi = sorted([float(row["left_yaw_rads_cpf"]), float(row["right_yaw_rads_cpf"])])
        assert lo <= g.yaw[0] <= hi


def test_unknown_gaze_schema_is_refused(tmp_path):
    p = tmp_path / "general_eye_gaze.csv"
    p.write_text("timestamp,gaze_x,gaze_y\n1,0.1,0.2\n")
    with pytest.raises(SourceError, match="general_eye_gaze.csv: unknown eye gaze schema"):
        aria.read_eye_gaze(p)


def test_online_calibration_rescaled_to_video(realdata):
    oc = aria.read_online_calibration(realdata / MPS / "trajectory" / "online_calibration.jsonl")
    assert len(oc.records) == 122
    cam = oc.camera_at("camera-rgb", oc.t_ns[5])
    assert tuple(cam.get_image_size()) == (2880, 2880)
    full = aria.rescale_rgb_calibration(cam, 1408, 1408)
    p = cam.get_projection_params()
    K, dist = aria.fisheye624_intrinsics(full)
    # Gen1: 2x2 binning and a 32-pixel crop of the sensor, pixel centres at integers
    assert np.allclose(K, [p[0] / 2, p[0] / 2, (p[1] + 0.5 - 32) / 2 - 0.5, (p[2] + 0.5 - 32) / 2 - 0.5])
    assert np.allclose(dist, p[3:])
    small = aria.rescale_rgb_calibration(cam, 448, 448)
    assert np.isclose(aria.fisheye624_intrinsics(small)[0][0], K[0] * 448 / 1408)


def test_vrs_images_calibration_and_gaze_reprojection(realdata):
    """The real recording with its own MPS gaze: our reprojection = projectaria-tools' on the same samples."""
    from projectaria_tools.core import mps
    from projectaria_tools.core.mps.utils import get_gaze_vector_reprojection

    stream = aria.VrsImageStream(realdata / AEA / "recording.vrs")
    assert len(stream) == 8
    frames = stream.read([0, 7])
    assert frames.shape == (2, 1408, 1408, 3) and frames.dtype == np.uint8
    device = stream.device_calibration()
    cam = device.get_camera_calib("camera-rgb")
    K, dist = aria.fisheye624_intrinsics(cam)
    assert K[0] == K[1] and dist.shape == (12,)
    gpath = realdata / AEA / "mps" / "eye_gaze" / "general_eye_gaze.csv"
    g = aria.read_eye_gaze(gpath)
    ours = aria.gaze_pixels(g.yaw, g.pitch, g.depth, device, cam)
    ref = [get_gaze_vector_reprojection(e, "camera-rgb", device, cam, e.depth or 1.0)
           for e in mps.read_eyegaze(str(gpath))]
    assert np.allclose(ours, np.stack([np.asarray(r).reshape(2) for r in ref]))
    assert np.all((ours > 0) & (ours < 1408))
    # the gaze samples' device times fall inside the recording
    assert stream.t_ns[0] - 1e8 < g.t_ns[0] < stream.t_ns[-1]
    # upright (EgoExo4D) mapping of the same pixels agrees with projectaria's rotated calibration
    up = aria.upright_calibration(cam)
    p_cam = np.array([0.2, -0.1, 1.0])
    uv = np.asarray(cam.project(p_cam)).reshape(2)
    uv_up = np.asarray(up.project(geo.UPRIGHT_FROM_RAW[:3, :3].T @ p_cam)).reshape(2)
    assert np.allclose(geo.upright_pixels(uv, 1408), uv_up)
    with pytest.raises(SourceError, match="no time-code mapping"):
        stream.timecode_to_device_ns([56752108188860])


def test_adt_adapter_on_real_vrs(realdata, tmp_path):
    from fixtures.adt import frame_truth, make_adt_tree

    info = make_adt_tree(tmp_path, realdata / AEA / "recording.vrs")
    ad = get_adapter("adt")
    (ref,) = ad.discover(tmp_path)
    assert ref.sequence == "Apartment_release_clean_seq131/1" and ref.split == "test"
    seq = ad.load(ref)
    stream = info["stream"]
    q_ns, src, valid = aria.timeline(stream.t_ns)
    assert seq.num_frames == len(q_ns) and np.array_equal(seq.frame_valid, valid)
    tr = frame_truth(stream, info["cam"], info["seed"], stream.t_ns[src])
    dR = geo.rotation_angle_deg(np.einsum("nji,njk->nik", seq.c2w[:, :3, :3], tr["c2w"][:, :3, :3]))
    assert dR.max() < 0.01 and np.abs(seq.c2w[:, :3, 3] - tr["c2w"][:, :3, 3]).max() < 1e-4
    err = np.abs(seq.gaze_px - tr["gaze_px"]).max()
    assert err < 1.408  # < 1e-3 of the 1408 image
    assert seq.read_frames(np.array([0])).shape == (1, 1408, 1408, 3) and seq.read_depth is None


def test_hot3d_vrs_sequence_falls_back_to_mps_poses(realdata, tmp_path):
    from fixtures.adt import frame_truth, make_hot3d_vrs_tree

    info = make_hot3d_vrs_tree(tmp_path, realdata / AEA / "recording.vrs")
    ad = get_adapter("hot3d_aria")
    (ref,) = ad.discover(tmp_path)
    assert ref.meta["layout"] == "vrs" and ref.split == "train"
    seq = ad.load(ref)  # this VRS has no time code: headset poses cannot be synchronised, MPS poses are used
    stream = info["stream"]
    _, src, _ = aria.timeline(stream.t_ns)
    tr = frame_truth(stream, info["cam"], info["seed"], stream.t_ns[src])
    assert np.abs(seq.c2w[:, :3, 3] - tr["c2w"][:, :3, 3]).max() < 1e-4
    assert np.abs(seq.gaze_px - tr["gaze_px"]).max() < 1.408
    assert any(f.endswith("closed_loop_trajectory.csv") for f in seq.source_files)


def test_quest_gray_vrs_reader_on_real_vrs(realdata):
    from egom2p.adapters.hot3d_aria import QuestVrsStream

    s = QuestVrsStream(realdata / AEA / "recording.vrs", "1201-1")  # a real gray SLAM stream
    assert len(s.t_ns) > 0 and np.all(np.diff(s.t_ns) > 0)
    img = s.read([0])
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[1:] == (480, 640)
    with pytest.raises(SourceError, match="no stream 9999-1"):
        QuestVrsStream(realdata / AEA / "recording.vrs", "9999-1")


def test_quest_camera_models(realdata):
    """HOT3D Quest camera_models.json: 16 params (fx, fy, cx, cy, ...), T_Device_Camera w-first."""
    import json

    from egom2p.adapters.hot3d_aria import Hot3DAdapter, _se3

    models = json.loads((realdata / HOT3D_QUEST / "camera_models.json").read_text())
    m = next(x for x in models if x["stream_id"] == "1201-1")
    K, dist = Hot3DAdapter._intrinsics(m["projectionParams"], "camera_models.json")
    assert K[0] == K[1] and (m["imageWidth"], m["imageHeight"]) == (1280, 1024) and dist.shape == (12,)
    T = _se3(m["T_Device_Camera"], "camera_models.json")
    assert np.isclose(np.linalg.det(T[:3, :3]), 1.0)
    cal = aria.camera_calibration_from_params("camera-slam-left", m["projectionParams"], T, 1280, 1024)
    uv = np.asarray(cal.project(np.array([0.0, 0.0, 1.0]))).reshape(2)
    assert np.allclose(uv, K[2:], atol=1.0)  # the optical axis lands near the principal point
