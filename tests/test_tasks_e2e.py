"""End to end: tiny tokenizers + a tiny model trained briefly on clips, then `egom2p predict` / `egom2p eval`.

One module-scoped pipeline (about a minute on CPU): clips table (train + val splits) -> tiny rgb/depth
FSQ and cam/gaze VQ-VAE tokenizers trained for a few steps -> token DB -> tiny EgoM2P trained for a
150 steps -> the task CLIs. Checks: generation returns valid token ranges and never
overwrites its conditioning; `predict camera` writes a TUM trajectory for a real video; `eval camera`
prints the table and beats the static-pose baseline on the held-out clips; mismatched registries are
refused.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from egom2p import geometry as geo
from egom2p.clip import Clip
from egom2p.clips import write_clips
from egom2p.video import encode_h264
from tests.factories import moving_pattern

pytestmark = pytest.mark.slow

N_TRAIN, N_VAL = 12, 4


def _clip(i: int, split: str) -> Clip:
    """A 64x64 clip whose image motion follows its camera: the pattern drifts with the camera's yaw and speed."""
    rng = np.random.default_rng(i)
    speed = 0.6 + 0.8 * rng.random()
    turn = rng.uniform(-0.6, 0.6)
    n, S = 60, 64
    T = np.tile(np.eye(4), (n, 1, 1))
    t = np.arange(n) / 30
    yaw = turn * t + 0.1 * np.sin(3 * t + rng.uniform(0, 6))  # turning, with head sway
    v = speed * (1 + 0.3 * np.sin(2 * t + rng.uniform(0, 6)))  # walking speed varies
    for k in range(n):
        c, s = np.cos(yaw[k]), np.sin(yaw[k])
        T[k, :3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        T[k, :3, 3] = [0.0, 0.0, 0.0] if k == 0 else T[k - 1, :3, 3] + T[k, :3, 2] * v[k] / 30
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    rgb = np.empty((n, S, S, 3), np.uint8)
    for k in range(n):
        shift_x = -yaw[k] * 60  # turning right moves the scene left
        zoom = 1 + np.linalg.norm(T[k, :3, 3]) / 6  # walking forward expands the scene
        u, v = (xx - S / 2) / zoom + shift_x, (yy - S / 2) / zoom
        for ch in range(3):
            rgb[k, :, :, ch] = 127.5 + 100 * np.sin(u / (5 + 2 * ch) + v / (7 + ch) + ch)
    depth = np.clip(0.3 + 0.5 * (yy / S)[None].repeat(n, 0), 0, 1).astype(np.float32)
    gaze = np.stack([0.5 + 0.2 * np.sin(np.arange(n) / 9 + i), 0.5 + 0.1 * np.cos(np.arange(n) / 7)], -1)
    return Clip(dataset="egogen", sequence=f"s{i:03d}", start_frame=0, width=S, height=S, split=split,
                intrinsics=np.array([50.0, 50.0, 31.5, 31.5]), rgb=rgb, depth=depth, gaze=gaze.astype(np.float32),
                cam=geo.relative_to_first(T).astype(np.float32), depth_source="render",
                depth_range=np.array([0.25, 2.0]))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from egom2p.tokendb import write_tokens
    from egom2p.tokenizers import load_tokenizers
    from egom2p.tokenizers.train import TrainConfig, train_sequence, train_video
    from egom2p.train import compose_config, train

    root = tmp_path_factory.mktemp("e2e")
    clips = [_clip(i, "train") for i in range(N_TRAIN)] + [_clip(100 + i, "val") for i in range(N_VAL)]
    table = root / "egogen.lance"
    write_clips(table, clips)
    tok_dir = root / "tokenizers"
    quiet = lambda *a, **k: None  # noqa: E731
    train_video([str(table)], tok_dir, TrainConfig(steps=2, batch_size=2, device="cpu", log_every=100), log=quiet)
    for m, steps in (("cam", 80), ("gaze", 20)):
        train_sequence(m, [str(table)], tok_dir, TrainConfig(steps=steps, batch_size=12, device="cpu", log_every=1000),
                       log=quiet)
    toks = load_tokenizers(tok_dir)
    rows = []
    for c in clips:
        row = {"clip_id": c.clip_id, "dataset": c.dataset, "sequence": c.sequence, "split": c.split}
        row["tok_rgb"] = toks["rgb"].encode(c.rgb[None])[0]
        row["tok_depth"] = toks["depth"].encode(c.depth[None])[0]
        row["tok_cam"] = toks["cam"].encode(c.cam[None])[0]
        row["tok_gaze"] = toks["gaze"].encode(c.gaze[None])[0]
        rows.append(row)
    db = root / "tokens" / "demo.lance"
    reg = toks["rgb"].registry
    write_tokens(db, rows, registry=reg, tokenizers={m: t.identity for m, t in toks.items()})
    cfg = compose_config(["model=tiny", "train.steps=150", "data.batch_size=8", "train.device=cpu", "train.num_workers=0",
                          "train.tensorboard=false", "train.log_every=1000", "train.ckpt_every=1000"])
    res = train(cfg, str(db), out=str(root / "run"))
    return {"root": root, "table": table, "tokenizers": tok_dir, "ckpt": res["checkpoint"], "clips": clips}


def test_generation_respects_conditioning_and_vocab(pipeline):
    from egom2p.checkpoint import load_model
    from egom2p.generate import generate
    from egom2p.tokenizers import load_tokenizers

    model, registry, _ = load_model(pipeline["ckpt"])
    toks = load_tokenizers(pipeline["tokenizers"])
    c = pipeline["clips"][-1]
    cond = {"rgb": torch.as_tensor(toks["rgb"].encode(c.rgb[None]))}
    before = cond["rgb"].clone()
    out = generate(model, cond, ["cam", "gaze"], "camera", generator=torch.Generator().manual_seed(0))
    assert torch.equal(cond["rgb"], before)  # inputs never overwritten
    assert set(out) >= {"cam", "gaze"}
    if "rgb" in out:
        assert torch.equal(out["rgb"], before)
    for m in ("cam", "gaze"):
        assert out[m].shape == (1, registry[m].num_tokens) and out[m].dtype == torch.long
        assert int(out[m].min()) >= 0 and int(out[m].max()) < registry[m].vocab_size


def test_predict_camera_on_a_video(pipeline, tmp_path):
    from egom2p.cli import main
    from egom2p.tasks import read_tum

    video = tmp_path / "walk.mp4"
    frames = np.concatenate([pipeline["clips"][-1].rgb, pipeline["clips"][-2].rgb, pipeline["clips"][-3].rgb[:30]])
    encode_h264(frames, fps=30, path=video)  # 150 frames = 5 s: three windows
    rc = main(["predict", "camera", "--ckpt", str(pipeline["ckpt"]), "--tokenizers", str(pipeline["tokenizers"]),
               "--video", str(video), "--out", str(tmp_path / "out")])
    assert rc == 0
    times, T = read_tum(tmp_path / "out" / "trajectory.tum.txt")
    assert T.shape == (150, 4, 4) and np.allclose(T[0], np.eye(4), atol=1e-5) and np.all(np.isfinite(T))
    assert (tmp_path / "out" / "trajectory.png").stat().st_size > 5000
    summary = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert summary["window_starts"] == [0, 59, 90]
    # ground truth beside the prediction: the first 2 s of the video are the last clip, its poses as TUM
    from egom2p.tasks import write_tum

    write_tum(tmp_path / "gt.tum", np.arange(60) / 30, pipeline["clips"][-1].cam)
    rc = main(["predict", "camera", "--ckpt", str(pipeline["ckpt"]), "--tokenizers", str(pipeline["tokenizers"]),
               "--video", str(video), "--out", str(tmp_path / "gt"), "--gt", str(tmp_path / "gt.tum")])
    assert rc == 0
    gt = json.loads((tmp_path / "gt" / "predict.json").read_text())["ground_truth"]
    assert gt["frames"] == 60 and gt["alignment"] == "sim3" and gt["errors"]["ate"] >= 0
    rc = main(["predict", "camera", "--ckpt", str(pipeline["ckpt"]), "--tokenizers", str(pipeline["tokenizers"]),
               "--video", str(video), "--out", str(tmp_path / "gt2"), "--gt", pipeline["clips"][-1].clip_id,
               "--gt-clips", str(pipeline["table"])])
    assert rc == 0  # a clip id of a clips table (this clip starts at frame 0 of its sequence)
    gt2 = json.loads((tmp_path / "gt2" / "predict.json").read_text())["ground_truth"]
    assert gt2["errors"]["ate"] == pytest.approx(gt["errors"]["ate"], abs=1e-5)


def test_predict_samples_writes_the_mean_of_samples(pipeline, tmp_path, monkeypatch):
    from egom2p.cli import main
    from egom2p.tasks import TaskRunner, run_task

    asked, sampling = [], TaskRunner.sampling
    monkeypatch.setattr(TaskRunner, "sampling", lambda self, k: asked.append(k) or sampling(self, k))

    video = tmp_path / "walk.mp4"
    encode_h264(pipeline["clips"][-1].rgb, fps=30, path=video)  # one window
    base = ["--ckpt", str(pipeline["ckpt"]), "--tokenizers", str(pipeline["tokenizers"]), "--video", str(video)]
    assert main(["predict", "gaze", *base, "--out", str(tmp_path / "one")]) == 0
    assert main(["predict", "gaze", *base, "--out", str(tmp_path / "mean"), "--samples", "4"]) == 0
    assert json.loads((tmp_path / "mean" / "predict.json").read_text())["samples"] == 4 and asked == [4]

    def xy(d):
        return np.loadtxt(tmp_path / d / "gaze.csv", delimiter=",", skiprows=1)[:, 2:4]

    runner = TaskRunner.load(pipeline["ckpt"], pipeline["tokenizers"], seed=0).sampling(4)
    expected = run_task(runner, "gaze", video=str(video)).prediction
    assert xy("mean").shape == (60, 2) and np.allclose(xy("mean"), expected, atol=1e-5)
    assert xy("one").shape == (60, 2)
    assert main(["predict", "gaze", *base, "--out", str(tmp_path / "bad"), "--samples", "0"]) == 2


def test_expected_code_in_predict_and_eval(pipeline, tmp_path, monkeypatch):
    from egom2p.cli import main
    from egom2p.tasks import TaskRunner, run_task

    ran, run = [], TaskRunner.run
    monkeypatch.setattr(TaskRunner, "run", lambda self, *a, **k: ran.append(self.expected) or run(self, *a, **k))

    video = tmp_path / "walk.mp4"
    encode_h264(pipeline["clips"][-1].rgb, fps=30, path=video)  # one window
    base = ["--ckpt", str(pipeline["ckpt"]), "--tokenizers", str(pipeline["tokenizers"])]
    assert main(["predict", "camera", *base, "--video", str(video), "--out", str(tmp_path / "exp"), "--expected"]) == 0
    assert json.loads((tmp_path / "exp" / "predict.json").read_text())["expected"] is True and ran == [True]
    from egom2p.tasks import read_tum

    _, T = read_tum(tmp_path / "exp" / "trajectory.tum.txt")
    runner = TaskRunner.load(pipeline["ckpt"], pipeline["tokenizers"]).expectation()
    want = run_task(runner, "camera", video=str(video)).prediction
    assert runner.expected and np.allclose(T, want, atol=1e-4)
    R = T[:, :3, :3].astype(np.float64)  # the decoded poses are rigid
    assert np.allclose(R @ np.swapaxes(R, 1, 2), np.eye(3), atol=1e-4) and np.allclose(np.linalg.det(R), 1, atol=1e-4)
    assert main(["predict", "camera", *base, "--video", str(video), "--out", str(tmp_path / "x"), "--expected",
                 "--samples", "4"]) == 2  # one estimate at a time
    # eval: the extra row, compared with the best baseline like the one decode
    assert main(["eval", "gaze", *base, "--clips", str(pipeline["table"]), "--limit", "2", "--out", str(tmp_path),
                 "--expected"]) == 0
    data = json.loads((tmp_path / "eval_gaze.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert rows["EgoM2P, expected code"]["kind"] == "model" and rows["EgoM2P, expected code"]["clips"] == 2
    assert 0 <= rows["EgoM2P, expected code"]["mse"] < 1
    assert [c["method"] for c in data["comparison"]] == ["EgoM2P", "EgoM2P, expected code"]
    assert "expected code" in (tmp_path / "eval_gaze.md").read_text()
    # what the rgb tokens are worth to the model: the mean of the runner's per-clip NLLs given them and without
    from egom2p.evaluation import select_clips
    from egom2p.tasks.inputs import clip_inputs

    info = data["information"]
    clips = select_clips([str(pipeline["table"])], "gaze", limit=2)[0]
    truth = clip_inputs(clips, ("gaze",), runner.image_size())["gaze"]
    nll = runner.token_nll("gaze", clip_inputs(clips, ("rgb",), runner.image_size()), truth)
    assert nll.shape == (2, 2) and (nll > 0).all() and info["clips"] == 2
    assert info["given_inputs"] == pytest.approx(nll[:, 0].mean(), rel=1e-4)
    assert info["gain"] == pytest.approx(nll[:, 1].mean() - nll[:, 0].mean(), abs=1e-4)
    assert "gaze tokens' NLL" in (tmp_path / "eval_gaze.md").read_text()


def test_predict_depth_on_a_long_video_is_one_even_8fps_timeline(pipeline, tmp_path):
    from egom2p.cli import main
    from egom2p.tasks.inputs import token_grid_frame

    video = tmp_path / "walk.mp4"
    frames = np.concatenate([c.rgb for c in pipeline["clips"][-3:]])[:170]
    encode_h264(frames, fps=30, path=video)  # 170 frames: windows at 0, 45, 90 (padded)
    rc = main(["predict", "depth", "--ckpt", str(pipeline["ckpt"]), "--tokenizers", str(pipeline["tokenizers"]),
               "--video", str(video), "--out", str(tmp_path / "out")])
    assert rc == 0
    summary = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert summary["window_starts"] == [0, 45, 90, 135][: len(summary["window_starts"])]
    assert summary["padding_frames"] > 0
    depth = np.load(tmp_path / "out" / "depth.npy")
    index = np.loadtxt(tmp_path / "out" / "depth_frames.csv", delimiter=",", skiprows=1)[:, 1].astype(int)
    assert len(depth) == len(index) == summary["output_frames"]
    assert np.array_equal(index, token_grid_frame(np.arange(len(index)))) and index[-1] <= 169 < index[-1] + 4
    assert np.nanmin(depth) >= 0 and np.nanmax(depth) <= 1


def test_eval_camera_beats_static_pose(pipeline, tmp_path, capsys):
    from egom2p.cli import main

    rc = main(["eval", "camera", "--ckpt", str(pipeline["ckpt"]), "--tokenizers", str(pipeline["tokenizers"]),
               "--clips", str(pipeline["table"]), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "static pose" in out and "ATE (m)" in out and f"{N_VAL} clips (split val)" in out
    data = json.loads((tmp_path / "eval_camera.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    print(json.dumps(rows, indent=1))
    assert rows["EgoM2P"]["clips"] == N_VAL
    assert rows["EgoM2P"]["ate"] < rows["static pose"]["ate"]
    # Under Sim(3) a prediction can shrink to the static solution (scale 0), so also check SE(3):
    # there the model has to get the metric scale of the motion right to beat the static camera.
    rc = main(["eval", "camera", "--alignment", "se3", "--ckpt", str(pipeline["ckpt"]), "--tokenizers",
               str(pipeline["tokenizers"]), "--clips", str(pipeline["table"]), "--out", str(tmp_path / "se3")])
    assert rc == 0
    rows = {r["method"]: r for r in json.loads((tmp_path / "se3" / "eval_camera.json").read_text())["rows"]}
    print(json.dumps(rows, indent=1))
    assert rows["EgoM2P"]["ate"] < rows["static pose"]["ate"]


def test_eval_other_tasks_print_tables(pipeline, tmp_path, capsys):
    from egom2p.cli import main

    for task in ("gaze", "depth", "rgb"):
        rc = main(["eval", task, "--ckpt", str(pipeline["ckpt"]), "--tokenizers", str(pipeline["tokenizers"]),
                   "--clips", str(pipeline["table"]), "--limit", "2", "--out", str(tmp_path),
                   "--weights", str(tmp_path / "no_weights")])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert "EgoM2P" in out and (tmp_path / f"eval_{task}.md").exists()
    assert "centre prior" in (tmp_path / "eval_gaze.md").read_text()
    assert "per-clip mean depth" in (tmp_path / "eval_depth.md").read_text()


def test_mismatched_registry_is_refused(pipeline, tmp_path, capsys):
    """A cam tokenizer written for the base registry beside the tiny checkpoint: a clear error."""
    from egom2p.cli import main
    from egom2p.modalities import get_registry
    from egom2p.tokenizers import save_tokenizer
    from egom2p.tokenizers.vqvae import VQVAE_PRESETS, SequenceVQVAE, VQVAEConfig

    base = get_registry("base")
    cfg = VQVAEConfig(in_channels=9, frames=60, codebook_size=base["cam"].vocab_size, **VQVAE_PRESETS["tiny"])
    save_tokenizer(tmp_path / "tok" / "cam", SequenceVQVAE(cfg), kind="vqvae", modality="cam", registry=base,
                   model_config=cfg.to_dict(), norm={"mean": [0.0] * 9, "std": [1.0] * 9})
    rc = main(["eval", "camera", "--ckpt", str(pipeline["ckpt"]), "--tokenizers", str(tmp_path / "tok"),
               "--clips", str(pipeline["table"])])
    err = capsys.readouterr().err
    assert rc == 2
    assert "modality registry mismatch" in err and "vocab 64" in err and "vocab 256" in err


def test_predict_refuses_short_and_corrupt_videos(pipeline, tmp_path, capsys):
    from egom2p.cli import main

    short = tmp_path / "short.mp4"
    encode_h264(moving_pattern(45, 64, 64), fps=30, path=short)
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 300)
    base = ["--ckpt", str(pipeline["ckpt"]), "--tokenizers", str(pipeline["tokenizers"]), "--out", str(tmp_path / "o")]
    assert main(["predict", "camera", "--video", str(short), *base]) == 2
    assert "short.mp4: video is 45 frames (1.50 s)" in capsys.readouterr().err
    assert main(["predict", "gaze", "--video", str(bad), *base]) == 2
    assert "corrupt.mp4" in capsys.readouterr().err
    assert main(["predict", "rgb", *base]) == 2
    assert "needs --depth" in capsys.readouterr().err
