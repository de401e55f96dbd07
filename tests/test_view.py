"""`egom2p view`: rerun recordings of a clip, a sequence, a prediction folder and an eval folder, read back.

The recordings are written with ``--save`` and read back with rerun's own RRD reader
(:func:`egom2p.view.summarize_rrd`, ``rerun.experimental.RrdReader``): the entities, the frames logged
on the 30 FPS timeline, and the values (a back-projected point, a gaze pixel) against what the
clip holds. Predictions come from the real writers (``tasks.run_task`` + ``write_outputs`` with a
stand-in model; ``evaluation.evaluate`` + ``write_report`` with an oracle runner).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from egom2p import geometry as geo
from egom2p import view
from egom2p.cli import main as cli
from egom2p.clips import write_clips
from egom2p import evaluation as E
from egom2p.modalities import get_registry
from egom2p.tasks import TaskRunner, get_task, run_task, write_outputs
from egom2p.video import encode_h264, token_frame_indices
from tests.factories import make_clip, moving_pattern, walk_trajectory
from tests.test_eval import OracleRunner


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("view") / "egogen.lance"
    clips = [make_clip(sequence="s0", start=s, size=64, seed=1) for s in (0, 20, 40)]
    clips.append(make_clip(sequence="s1", start=0, size=64, seed=2, modalities=("rgb", "cam")))
    for c in clips:
        c.split = "val"
    write_clips(path, clips)
    return path, {c.clip_id: c for c in clips}


def values(path, entity: str, component: str, frame: int):
    """The value of one component logged at one frame, read back from the .rrd."""
    from rerun.experimental import RrdReader

    for chunk in RrdReader(path).store().stream():
        if str(chunk.entity_path).lstrip("/") != entity:
            continue
        batch = chunk.to_record_batch()
        if component not in batch.schema.names or view.TIMELINE not in batch.schema.names:
            continue
        frames = batch.column(view.TIMELINE).to_pylist()
        if frame in frames:
            return batch.column(component)[frames.index(frame)].as_py()
    raise KeyError((entity, component, frame))


def test_clip_recording_entities_frames_and_values(tmp_path, table):
    path, clips = table
    rrd = tmp_path / "clip.rrd"
    assert cli(["view", str(path), "--clip", "egogen/s0/000020", "--save", str(rrd), "--point-stride", "2"]) == 0
    s = view.summarize_rrd(rrd)
    for ent in ("world/gt/camera", "world/gt/camera/image", "world/gt/camera/image/gaze", "depth/gt",
                "world/gt/points"):
        assert s[ent]["frames"] == 60, ent
    assert "Transform3D:translation" in s["world/gt/camera"]["components"]
    assert "Pinhole:image_from_camera" in s["world/gt/camera"]["components"]
    assert "DepthImage:colormap" in s["depth/gt"]["components"]
    assert s["world/gt/trajectory"]["frames"] == 1 and s["world"]["static"]
    from rerun.experimental import RrdReader

    # the layout travels in the file as the application's blueprint
    assert [(b.kind, b.application_id) for b in RrdReader(rrd).blueprints()] == [("blueprint", "egom2p")]
    clip = clips["egogen/s0/000020"]
    # the camera pose and the gaze pixel of frame 30 are the clip's
    t = values(rrd, "world/gt/camera", "Transform3D:translation", 30)
    assert np.allclose(t[0], clip.cam[30, :3, 3], atol=1e-5)
    g = values(rrd, "world/gt/camera/image/gaze", "Points2D:positions", 30)
    assert np.allclose(g[0], geo.normalized_to_pixels(clip.gaze[30][None].astype(np.float64), 64, 64)[0], atol=1e-3)
    assert values(rrd, "world/gt/camera/image/gaze", "Points2D:positions", 11) == []  # invalid gaze: no point
    # the point cloud is the depth back-projected with the intrinsics and moved by the pose
    pts = np.asarray(values(rrd, "world/gt/points", "Points3D:positions", 30))
    depth_m = 1.0 / (clip.depth[30] * (2.0 - 0.2) + 0.2)
    d = depth_m[::2, ::2]
    ok = np.isfinite(d)
    assert len(pts) == ok.sum()
    v, u = np.mgrid[0:64:2, 0:64:2]
    cam_pts = geo.unproject(np.stack([u[ok], v[ok]], -1).astype(np.float64), d[ok], clip.intrinsics)
    assert np.allclose(pts, geo.transform_points(clip.cam[30].astype(np.float64), cam_pts), atol=1e-3)


def test_sequence_recording_chains_clips_on_one_timeline(tmp_path, table):
    path, clips = table
    rrd = tmp_path / "seq.rrd"
    assert cli(["view", str(path), "--sequence", "s0", "--save", str(rrd)]) == 0
    s = view.summarize_rrd(rrd)
    assert s["world/gt/camera/image"]["frames"] == 100  # starts 0, 20, 40 + 60 frames
    assert s["world/gt/camera"]["frames"] == 100
    # frame 25 comes from the clip starting at 20 (its frame 5), its pose chained after 20 frames of the first
    c0, c1 = clips["egogen/s0/000000"], clips["egogen/s0/000020"]
    t = values(rrd, "world/gt/camera", "Transform3D:translation", 25)
    want = (c0.cam[20].astype(np.float64) @ c1.cam[5].astype(np.float64))[:3, 3]
    assert np.allclose(t[0], want, atol=1e-4)
    # two clips one after the other; a clip without depth/gaze logs only what it has
    rrd2 = tmp_path / "two.rrd"
    assert cli(["view", str(path), "--clip", "egogen/s0/000000", "egogen/s1/000000", "--save", str(rrd2)]) == 0
    s2 = view.summarize_rrd(rrd2)
    assert s2["world/gt/camera/image"]["frames"] == 120 and s2["depth/gt"]["frames"] == 60
    assert s2["info"]["frames"] == 2


class WindowRunner(TaskRunner):
    """A stand-in model on 64x64 windows: a known walk, a gaze circle, a depth ramp and the input frames."""

    def __init__(self):
        super().__init__(model=None, registry=get_registry("tiny"), tokenizers={})

    def run(self, task, inputs, batch_size=8, timing=None, progress=False):
        task = get_task(task) if isinstance(task, str) else task
        n = len(next(iter(inputs.values())))
        tf = token_frame_indices()
        if task.target == "cam":
            return np.stack([geo.relative_to_first(walk_trajectory(60, seed=3)) for _ in range(n)])
        if task.target == "gaze":
            t = np.arange(60) / 60
            return np.stack([np.stack([0.5 + 0.3 * np.cos(t * 6), 0.5 + 0.3 * np.sin(t * 6)], 1)] * n)
        if task.target == "depth":
            ramp = np.linspace(0.1, 0.9, 64, dtype=np.float32)[None, None, :].repeat(64, 1).repeat(16, 0)
            return np.stack([ramp] * n)
        return np.stack([inputs["depth"][i][tf, ..., None].repeat(3, -1).clip(0, 1) * 255 for i in range(n)]
                        ).astype(np.uint8)


def test_prediction_folder_recording(tmp_path):
    video = tmp_path / "walk.mp4"
    encode_h264(moving_pattern(90, 64, 64), fps=30, path=video)  # 3 s
    depth = tmp_path / "depth.npy"
    np.save(depth, np.linspace(0.5, 4, 90 * 64 * 64, dtype=np.float32).reshape(90, 64, 64))
    out = tmp_path / "pred"
    runner = WindowRunner()
    for task in ("rgb", "depth", "gaze", "camera"):  # camera last: predict.json names the video
        res = run_task(runner, task, video=None if task == "rgb" else video, depth=depth if task == "rgb" else None,
                       progress=False)
        write_outputs(res, out)
        (out / "predict.json").write_text(json.dumps({"task": task, "input": str(depth if task == "rgb" else video)}))
    rrd = tmp_path / "pred.rrd"
    assert cli(["view", str(out), "--save", str(rrd)]) == 0
    s = view.summarize_rrd(rrd)
    assert s["world/gt/camera/image"]["frames"] == 90  # the input video
    assert s["world/pred/camera"]["frames"] == 90  # trajectory.tum.txt
    assert s["world/gt/camera/image/gaze_pred"]["frames"] == 90  # gaze.csv on the input image
    n_depth = len(np.load(out / "depth.npy"))
    assert s["depth/pred"]["frames"] == n_depth and s["world/pred/points"]["frames"] == n_depth
    assert s["world/pred/camera/image"]["frames"] == n_depth  # rgb.mp4 (from depth), at the token frames
    T = np.asarray(walk_trajectory(60, seed=3))
    t = values(rrd, "world/pred/camera", "Transform3D:translation", 45)
    assert np.allclose(t[0], geo.relative_to_first(T)[45, :3, 3], atol=1e-4)


def test_eval_folder_recording_truth_beside_prediction(tmp_path, table):
    path, clips = table
    ids = ["egogen/s0/000000", "egogen/s0/000020"]
    chosen = [clips[i] for i in ids]
    runner = OracleRunner(chosen, noise=0.01)
    for task in ("camera", "gaze", "depth", "rgb"):
        report = E.evaluate(runner, task, chosen, progress=False)
        report.settings["clips"] = [str(path)]
        paths = E.write_report(report, tmp_path / "eval")
        assert paths["predictions"].endswith(f"eval_{task}_predictions.npz")
    rrd = tmp_path / "eval.rrd"
    assert cli(["view", str(tmp_path / "eval"), "--save", str(rrd)]) == 0
    s = view.summarize_rrd(rrd)
    assert s["world/gt/camera"]["frames"] == 120 and s["world/pred/camera"]["frames"] == 120
    assert s["world/gt/camera/image/gaze"]["frames"] == 120
    assert s["world/gt/camera/image/gaze_pred"]["frames"] == 120
    assert s["depth/gt"]["frames"] == 120 and s["depth/pred"]["frames"] == 32  # 16 token frames per clip
    assert s["world/pred/camera/image"]["frames"] == 32 and s["world/pred/points"]["frames"] == 32
    # the oracle's depth is affine in inverse depth: fitted back, it is the truth
    tf = token_frame_indices()
    c = clips[ids[1]]
    d_pred = np.asarray(values(rrd, "depth/pred", "DepthImage:buffer", 60 + int(tf[3])), np.uint8).view(np.float16)
    d_true = 1.0 / (c.depth[tf[3]] * 1.8 + 0.2)
    ok = np.isfinite(d_true)
    assert np.allclose(d_pred.reshape(64, 64)[ok], d_true[ok], rtol=2e-3)


def test_view_errors_are_one_line(tmp_path, table, capsys):
    assert cli(["view", str(tmp_path / "nothing"), "--save", str(tmp_path / "x.rrd")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli(["view", str(tmp_path / "empty"), "--save", str(tmp_path / "x.rrd")]) == 2
    assert "neither a clips table" in capsys.readouterr().err
    path, _ = table
    assert cli(["view", str(path), "--clip", "egogen/nope/000000", "--save", str(tmp_path / "x.rrd")]) == 2
    assert "no clip 'egogen/nope/000000'" in capsys.readouterr().err
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "eval_camera.json").write_text(json.dumps({"task": "camera", "settings": {}}))
    assert cli(["view", str(tmp_path / "ev"), "--save", str(tmp_path / "x.rrd")]) == 2
    assert "no predictions file eval_camera_predictions.npz" in capsys.readouterr().err


SERVE_SCRIPT = """
import faulthandler, socket, sys
from egom2p import view

faulthandler.dump_traceback_later(150, exit=True)  # a hang fails with the Python stacks, inside the 180 s

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

segs = view.clips_segments(sys.argv[1], limit=1)
grpc, web = free_port(), free_port()
rec, url = view.show(segs, "serve", grpc_port=grpc, web_port=web)
assert url.startswith("rerun+http://") and str(grpc) in url, url
for port in (grpc, web):
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
# a second stream connects to the served one as `--connect URL` does and sends its data there
rec2, where = view.show(segs, "connect", url=url)
assert where == url
rec2.disconnect()
rec.disconnect()
print("served", url)
"""


def test_serve_starts_a_grpc_server_and_a_web_viewer(table):
    # in a child process with a hard limit: rerun's servers are native threads, and a stuck one
    # must fail this test rather than hold the whole suite
    path, _ = table
    done = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, str(path)], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("served rerun+http://")
