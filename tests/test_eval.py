"""Evaluation: clip selection from real clips tables, the model / ceiling / baseline tables, JSON/markdown, CLI errors.

The harness is tested here with an oracle runner (the model replaced by the ground truth plus known
noise) and exact stand-in tokenizers, so each number is predictable; the end-to-end run with a
trained tiny model is in tests/test_tasks_e2e.py. The acceptance test of the one metrics library
(a tokenizer's reported ATE is what `egom2p eval camera` gives a perfect model) uses a real trained
camera tokenizer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from egom2p import evaluation as E
from egom2p import metrics as M
from egom2p.clips import write_clips
from egom2p.geometry import make_se3
from egom2p.modalities import get_registry
from egom2p.tasks import TaskInputError, TaskRunner, baselines as B, get_task
from egom2p.video import token_frame_indices
from tests.factories import make_clip


@pytest.fixture(scope="module")
def clips_table(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    clips = []
    for i in range(4):
        c = make_clip(sequence=f"s{i}", seed=i, size=64)
        c.split = "train" if i == 0 else "val"
        clips.append(c)
    clips.append(make_clip(sequence="rgbonly", seed=9, size=64, modalities=("rgb",)))
    clips[-1].split = "val"
    path = d / "egogen.lance"
    write_clips(path, clips)
    return path


def _oracle_nll(self, task, inputs, targets, batch_size=8):
    """A model that knows the truth given its inputs (0 nats) and nothing without them (log 64 nats)."""
    return np.tile([0.0, np.log(64.0)], (len(targets), 1))


class OracleRunner(TaskRunner):
    """Returns the ground truth of the clips it was given (plus noise) instead of generating."""

    token_nll = _oracle_nll

    def __init__(self, clips, noise=0.0, tokenizers=None):
        super().__init__(model=None, registry=get_registry("tiny"), tokenizers=tokenizers or _stand_ins())
        self.clips, self.noise = clips, noise

    def run(self, task, inputs, batch_size=8, timing=None, progress=False):
        task = get_task(task) if isinstance(task, str) else task
        rng = np.random.default_rng(0)
        tidx = token_frame_indices()
        out = []
        for c in self.clips:
            if task.target == "cam":
                T = c.cam.astype(np.float64).copy()
                T[:, :3, 3] += rng.normal(0, self.noise, T[:, :3, 3].shape)
                out.append(T)
            elif task.target == "gaze":
                out.append(np.nan_to_num(c.gaze, nan=0.5) + self.noise)
            elif task.target == "depth":
                out.append(np.nan_to_num(c.depth[tidx], nan=0.0) * 0.7 + 0.1)  # affine in inverse depth
            else:
                out.append(c.rgb[tidx])
        if timing is not None:
            timing.generate_s += 0.01 * len(out)
            timing.windows += len(out)
        return np.stack(out)


class _Quant:
    """A stand-in tokenizer: keeps what the real one keeps (token frames for video), quantised to 16 levels
    (rgb), 1/32 (depth) or exact (sequences); `tokens` are the kept values themselves."""

    def __init__(self, modality):
        self.modality = modality

    def encode(self, x):
        x = np.asarray(x)
        if self.modality == "rgb":
            return (x[:, token_frame_indices()] // 16).astype(np.int64)
        if self.modality == "depth":
            return np.round(np.nan_to_num(x[:, token_frame_indices()], nan=0.0) * 32)
        return np.nan_to_num(x, nan=0.5)

    def decode(self, t):
        if self.modality == "rgb":
            return (np.asarray(t) * 16 + 8).astype(np.uint8)
        if self.modality == "depth":
            return (np.asarray(t) / 32).astype(np.float32)
        return np.asarray(t)


def _stand_ins():
    return {m: _Quant(m) for m in ("rgb", "depth", "gaze", "cam")}


def _train(task, clips_table):
    return E.training_clips(get_task(task), [clips_table])


def test_select_clips_prefers_held_out_and_filters_modalities(clips_table):
    clips, split = E.select_clips([clips_table], "camera")
    assert split == "val" and [c.sequence for c in clips] == ["s1", "s2", "s3"]
    clips, split = E.select_clips([clips_table.parent], "camera", split="train")  # a directory of tables
    assert [c.sequence for c in clips] == ["s0"]
    assert len(E.select_clips([clips_table], "gaze", limit=2)[0]) == 2
    with pytest.raises(TaskInputError, match="no clip.*split 'test'"):
        E.select_clips([clips_table], "camera", split="test")
    with pytest.raises(TaskInputError, match="not found"):
        E.select_clips([clips_table.parent / "nope.lance"], "camera")


def test_training_clips_from_the_train_split_or_the_token_db_lineage(clips_table, tmp_path):
    train, source = _train("camera", clips_table)
    assert [c.sequence for c in train] == ["s0"] and "train-split clips of the evaluated clips tables" in source
    assert train[0].rgb is None and train[0].cam is not None  # only what the baselines need is decoded
    train, _ = _train("rgb", clips_table)
    assert train[0].rgb is not None and train[0].depth is not None
    # a table without a train split: the statistics come from the token DB the checkpoint was trained on
    val_only = tmp_path / "val_only.lance"
    held = make_clip(sequence="v", seed=5, size=64)
    held.split = "val"
    write_clips(val_only, [held])
    assert E.training_clips(get_task("gaze"), [val_only]) == ([], "")
    from egom2p.tokendb import write_tokens

    db = tmp_path / "tokens.lance"
    reg = get_registry("tiny")
    row = {"clip_id": "egogen/s0/000000", "dataset": "egogen", "sequence": "s0", "split": "train",
           "tok_gaze": np.zeros(reg["gaze"].num_tokens, np.int64)}
    write_tokens(db, [row], registry=reg, tokenizers={}, lineage=[{"clips": str(clips_table), "clips_version": 1}])
    train, source = E.training_clips(get_task("gaze"), [val_only], {"db": {"path": str(db)}})
    assert [c.sequence for c in train] == ["s0"] and "token DB lineage" in source


def test_camera_table_with_ceiling_and_baselines(clips_table, tmp_path):
    clips, _ = E.select_clips([clips_table], "camera")
    train, source = _train("camera", clips_table)
    rep = E.evaluate(OracleRunner(clips, noise=0.005), "camera", clips, progress=False, train_clips=train,
                     train_source=source)
    model, rt = rep.row("EgoM2P"), rep.row("tokenizer round trip")
    static, cv = rep.row("static pose"), rep.row("constant velocity (first 2 GT poses)")
    mean = rep.row("mean training trajectory")
    assert [r["kind"] for r in rep.rows] == ["model", "ceiling", "baseline", "baseline", "baseline"]
    assert model["ate"] < 0.02 < static["ate"] and rt["ate"] == pytest.approx(0.0, abs=1e-9)  # exact stand-in
    assert model["clips"] == 3 and model["time_s"] == pytest.approx(0.01)
    assert cv["ate"] > 0 and cv["rre"] >= 0
    expect = np.mean([M.trajectory_errors(B.static_pose(), c.cam, "sim3").ate for c in clips])
    assert static["ate"] == pytest.approx(expect)
    s0 = train[0].cam.astype(np.float64)  # one training clip: its trajectory is the mean
    assert mean["ate"] == pytest.approx(np.mean([M.trajectory_errors(s0, c.cam, "sim3").ate for c in clips]))
    # model vs the best baseline on each main metric (ATE, RRE); > 1 = model better
    comp = {c["metric"]: c for c in rep.comparison}
    assert set(comp) == {"ate", "rre"}
    best = min((static, cv, mean), key=lambda r: r["ate"])
    assert comp["ate"]["best_baseline"] == best["method"]
    assert comp["ate"]["factor"] == pytest.approx(best["ate"] / model["ate"])
    assert comp["ate"]["model_better"] == (comp["ate"]["factor"] > 1) and comp["ate"]["ceiling"] == rt["ate"]
    assert comp["rre"]["model_better"] and comp["rre"]["baseline"] == min(r["rre"] for r in (static, cv, mean))
    table = E.format_table(rep)
    assert "ATE (m) ↓" in table and "static pose" in table and "tokenizer round trip" in table
    assert any("Sim(3)" in n for n in rep.notes) and any("first two ground-truth poses" in n for n in rep.notes)
    assert any("training statistics" in n and "1 train-split clips" in n for n in rep.notes)
    lines = E.format_comparison(rep)
    assert lines[0].startswith("ATE (m): EgoM2P") and "x better" in lines[1]
    # what the inputs are worth to the model, one line after the comparisons
    info = rep.information
    assert info["target"] == "cam" and info["inputs"] == ["rgb"] and info["clips"] == 3
    assert info["given_inputs"] == 0 and info["gain"] == pytest.approx(np.log(64.0))
    assert lines[-1] == f"cam tokens' NLL: 0.000 nats given rgb, {np.log(64):.3f} without any input: the inputs are worth " \
                        f"{np.log(64):.3f} nats per token to the model"
    assert any("unconditional pass" in n for n in rep.notes)
    paths = E.write_report(rep, tmp_path)
    data = json.loads(open(paths["json"]).read())
    assert data["task"] == "camera" and data["settings"]["alignment"] == "sim3" and len(data["rows"]) == 5
    assert data["comparison"][0]["metric"] == "ate" and data["settings"]["training_statistics"] == source
    md = open(paths["markdown"]).read()
    assert md.count("\n|---|") == 1 and "| EgoM2P |" in md and "| tokenizer round trip |" in md and "x better" in md
    assert data["information"]["gain"] == pytest.approx(np.log(64.0)) and "the inputs are worth 4.159 nats" in md


def test_baselines_needing_training_data_are_reported_missing(clips_table):
    clips, _ = E.select_clips([clips_table], "gaze")
    rep = E.evaluate(OracleRunner(clips, noise=0.01), "gaze", clips, progress=False)
    assert [r["method"] for r in rep.rows] == ["EgoM2P", "tokenizer round trip", "centre prior"]
    assert any("mean training gaze track: not computed" in n for n in rep.notes)


def test_gaze_and_depth_tables(clips_table):
    clips, _ = E.select_clips([clips_table], "gaze")
    train = _train("gaze", clips_table)[0]
    rep = E.evaluate(OracleRunner(clips, noise=0.01), "gaze", clips, progress=False, train_clips=train)
    assert rep.row("EgoM2P")["mse"] == pytest.approx(1e-4, rel=1e-3)
    assert rep.row("centre prior")["mse"] > rep.row("EgoM2P")["mse"]
    # the factory gives every clip the same gaze track (s0's, the one training clip): the mean track is exact
    assert rep.row("mean training gaze track")["mse"] == pytest.approx(0.0, abs=1e-12)
    # the stand-in fills invalid frames with 0.5; scored over valid frames only -> exact
    assert rep.row("tokenizer round trip")["mse"] == pytest.approx(0.0, abs=1e-12)
    assert rep.comparison[0]["metric"] == "mse" and rep.comparison[0]["best_baseline"] == "mean training gaze track"

    clips, _ = E.select_clips([clips_table], "depth")
    rep = E.evaluate(OracleRunner(clips), "depth", clips, progress=False, train_clips=_train("depth", clips_table)[0])
    m, base, mean_map = rep.row("EgoM2P"), rep.row("per-clip mean depth"), rep.row("mean training depth map")
    assert m["abs_rel"] < 1e-4 and m["delta1"] == pytest.approx(1.0)
    assert base["abs_rel"] > 0.1 and base["delta1"] < m["delta1"] and mean_map["abs_rel"] > 0.1
    assert 0 < rep.row("tokenizer round trip")["abs_rel"] < base["abs_rel"]  # quantised to 1/32
    assert any("inverse depth" in n for n in rep.notes) and any("raw sensor returns" in n for n in rep.notes)
    assert rep.comparison[0]["metric"] == "abs_rel"


def test_depth_ground_truth_is_raw_sensor_returns_only():
    """Issue 15 (6a): pixels a cleaning annotator filled are not scored, whatever their values."""
    from egom2p.tasks import ScoreContext

    spec = get_task("depth")
    clip = make_clip(seed=3, size=64)
    true = clip.depth.copy()
    box = np.zeros(true.shape, bool)
    box[:, 20:40, 20:40] = True
    clip.depth = np.where(box, 0.9, true).astype(np.float32)  # "inpainted": plausible values, not the truth
    clip.depth_raw_valid = np.isfinite(true) & ~box
    clip.validate()
    pred = np.nan_to_num(true[token_frame_indices()], nan=0.0) * 0.7 + 0.1  # exact up to the affine map
    ctx = ScoreContext()
    scored = spec.score(pred, spec.truth(clip, 64), ctx)
    assert scored["abs_rel"] < 1e-4 and scored["num_pixels"] == clip.depth_raw_valid[token_frame_indices()].sum()
    clip.depth_raw_valid = None  # as if the filled pixels were measurements
    assert spec.score(pred, spec.truth(clip, 64), ctx)["abs_rel"] > 0.01


def test_rgb_table_with_and_without_perceptual_weights(clips_table, tmp_path):
    from tests.test_metrics import _TinyI3D, _write_tiny_lpips

    clips, _ = E.select_clips([clips_table], "rgb")
    train, _ = _train("rgb", clips_table)
    rep = E.evaluate(OracleRunner(clips), "rgb", clips, weights_dir=tmp_path / "none", progress=False,
                     train_clips=train)
    assert rep.row("EgoM2P")["psnr"] > 60 and rep.row("EgoM2P")["ssim"] == pytest.approx(1.0)
    assert rep.row("EgoM2P")["lpips"] is None and "n/a" in E.format_table(rep)
    assert any("LPIPS not computed" in n and "alex.pth" in n for n in rep.notes)
    mean_f, nearest = rep.row("mean training frame"), rep.row("nearest training frame by depth")
    assert mean_f["clips"] == nearest["clips"] == 3 and 0 < mean_f["psnr"] < rep.row("tokenizer round trip")["psnr"]
    assert nearest["psnr"] > 0 and {c["metric"] for c in rep.comparison} == {"psnr", "ssim"}
    _write_tiny_lpips(tmp_path / "w")
    _TinyI3D.save(tmp_path / "w" / "fvd" / "i3d_torchscript.pt")
    rep = E.evaluate(OracleRunner(clips), "rgb", clips, weights_dir=tmp_path / "w", progress=False, train_clips=train)
    up = rep.row("tokenizer round trip")
    assert rep.row("EgoM2P")["lpips"] == pytest.approx(0.0, abs=1e-6) and up["lpips"] > 0
    assert rep.row("EgoM2P")["fvd"] == pytest.approx(0.0, abs=1e-3) and up["fvd"] > 0
    assert rep.row("mean training frame")["fvd"] > 0 and rep.row("mean training frame")["lpips"] > 0
    assert up["psnr"] < rep.row("EgoM2P")["psnr"]


class PerfectRunner(TaskRunner):
    """A model that generates exactly the ground-truth tokens of each clip's target."""

    token_nll = _oracle_nll

    def __init__(self, clips, tokenizers):
        super().__init__(model=None, registry=get_registry("tiny"), tokenizers=tokenizers)
        self.clips = clips

    def generate_tokens(self, task, cond, cfg, generator, first):
        n = next(iter(cond.values())).shape[0]
        gt = np.stack([getattr(c, task.target) for c in self.clips[first:first + n]])
        return torch.as_tensor(self.tokenizer(task.target).encode(gt))


def test_tokenizer_evaluation_is_the_ceiling_of_eval_camera(clips_table, tmp_path):
    """One metrics library: `tokenizer train cam` reports the ATE that `eval camera` gives a perfect model."""
    from egom2p.tokenizers import load_tokenizers
    from egom2p.tokenizers.train import TrainConfig, train_sequence

    metrics = train_sequence("cam", [clips_table], tmp_path, TrainConfig(steps=30, batch_size=4, log_every=1000),
                             log=lambda *_: None)
    toks = {**load_tokenizers(tmp_path), "rgb": _Quant("rgb")}
    clips, _ = E.select_clips([clips_table], "camera")  # the same held-out clips the tokenizer was evaluated on
    assert metrics["clips"] == len(clips) == 3
    rep = E.evaluate(PerfectRunner(clips, toks), "camera", clips, progress=False)
    model, rt = rep.row("EgoM2P"), rep.row("tokenizer round trip")
    assert metrics["alignment"] == "sim3" and metrics["cam_ate_m"] > 1e-4  # a real, imperfect tokenizer
    for key, tok_key in (("ate", "cam_ate_m"), ("rte", "cam_rte_m"), ("rre", "cam_rre_deg")):
        assert model[key] == pytest.approx(metrics[tok_key], rel=1e-6, abs=1e-9)
        assert rt[key] == pytest.approx(metrics[tok_key], rel=1e-6, abs=1e-9)


def test_eval_cli_reports_bad_input(clips_table, tmp_path, capsys):
    from egom2p.cli import main

    rc = main(["eval", "camera", "--ckpt", str(tmp_path / "missing"), "--tokenizers", str(tmp_path),
               "--clips", str(clips_table)])
    assert rc == 2
    assert "missing: checkpoint not found" in capsys.readouterr().err  # one line on stderr


class _Drawn(TaskRunner):
    """The real run loop (and ``samples`` averaging); each generation is a fresh draw of tokens from the
    runner's generator instead of the model."""

    def token_nll(self, task, inputs, targets, batch_size=8):  # uniform draws: log 64 nats, inputs or not
        return np.full((len(targets), 2), np.log(64.0))

    def generate_tokens(self, task, cond, cfg, generator, first):
        spec = self.registry[task.target]
        return torch.randint(0, spec.vocab_size, (len(next(iter(cond.values()))), spec.num_tokens), generator=generator)


class _Coded:
    """Stand-in sequence tokenizer: token k of a 2-frame step is gaze (k/64, k/64) or a pose turned k*0.05 rad
    about z and moved k/64 m along x (rgb: encodes to zeros, never decoded)."""

    def __init__(self, modality):
        self.modality = modality

    def encode(self, x):
        x = np.asarray(x)
        if self.modality == "gaze":
            return np.clip(np.round(np.nan_to_num(x[:, ::2, 0], nan=0.5) * 64), 0, 63).astype(np.int64)
        return np.zeros((len(x), 320), np.int64)

    def decode(self, t):
        k = np.repeat(np.asarray(t, np.float64), 2, axis=1)  # [B, 60]
        if self.modality == "gaze":
            return np.repeat((k / 64)[..., None], 2, -1).astype(np.float32)
        c, s = np.cos(k * 0.05), np.sin(k * 0.05)
        R = np.stack([np.stack([c, -s, 0 * c], -1), np.stack([s, c, 0 * c], -1),
                      np.stack([0 * c, 0 * c, 1 + 0 * c], -1)], -2)
        return make_se3(R, np.stack([k / 64, 0 * k, 0 * k], -1)).astype(np.float32)


def test_mean_of_samples_averages_decoded_draws_in_the_targets_geometry(clips_table):
    runner = _Drawn(model=None, registry=get_registry("tiny"), tokenizers={m: _Coded(m) for m in ("rgb", "gaze", "cam")})
    x = {"rgb": np.zeros((3, 60, 64, 64, 3), np.uint8)}
    spec = get_registry("tiny")["gaze"]
    # the 4 samples of the 3 windows go through the model as one batch of 4 blocks of 3
    gen = torch.Generator().manual_seed(0)
    draws = _Coded("gaze").decode(torch.randint(0, spec.vocab_size, (12, 30), generator=gen)).reshape(4, 3, 60, 2)
    mean4 = runner.sampling(4)
    assert mean4.samples == 4 and runner.samples == 1  # a new runner; the original keeps one decode
    cfg = mean4.config(get_task("gaze"))
    assert (cfg.temperature, cfg.top_p, cfg.steps) == (1.0, 1.0, 5)  # drawn from the model's distribution
    np.testing.assert_allclose(mean4.run("gaze", x, batch_size=8), np.mean(draws, 0), rtol=1e-6)
    gen = torch.Generator().manual_seed(0)
    one = _Coded("gaze").decode(torch.randint(0, spec.vocab_size, (3, 30), generator=gen))
    np.testing.assert_allclose(runner.run("gaze", x, batch_size=8), one)  # one sample: one draw
    # poses: the mean translation and the chordal mean rotation, a proper rotation
    poses = mean4.run("camera", x, batch_size=8)
    R = poses[..., :3, :3].astype(np.float64)
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-5)
    gen = torch.Generator().manual_seed(0)
    cams = _Coded("cam").decode(torch.randint(0, 64, (12, 30), generator=gen)).reshape(4, 3, 60, 4, 4)
    np.testing.assert_allclose(poses[..., :3, 3], np.mean(cams, 0)[..., :3, 3], atol=1e-6)
    # the eval table keeps the one-decode row and adds the mean row, each compared with the best baseline
    clips, _ = E.select_clips([clips_table], "gaze")
    rep = E.evaluate(runner, "gaze", clips, progress=False, train_clips=_train("gaze", clips_table)[0], samples=4)
    assert [r["method"] for r in rep.rows][:2] == ["EgoM2P", "EgoM2P, mean of 4 samples"] == ["EgoM2P", E.mean_row(4)]
    assert [r["kind"] for r in rep.rows][:3] == ["model", "model", "ceiling"]
    assert rep.row(E.mean_row(4))["mse"] < rep.row("EgoM2P")["mse"]  # uniform draws: the mean is nearer any truth
    assert [(c["method"], c["metric"]) for c in rep.comparison] == [("EgoM2P", "mse"), (E.mean_row(4), "mse")]
    lines = E.format_comparison(rep)
    assert lines[1].startswith("MSE: EgoM2P, mean of 4 samples") and any("temperature 1" in n for n in rep.notes)


def test_mean_of_rigid_transforms_and_of_integer_samples():
    from egom2p.geometry import mean_se3
    from egom2p.modality import info
    from egom2p.modality.base import mean_samples

    def rz(a, t):
        c, s = np.cos(a), np.sin(a)
        return make_se3(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]), t)

    m = mean_se3(np.stack([rz(0.2, [0, 0, 0]), rz(0.6, [1, 2, 4])]))
    np.testing.assert_allclose(m, rz(0.4, [0.5, 1, 2]), atol=1e-12)  # halfway round z, halfway along
    np.testing.assert_allclose(mean_se3(np.stack([rz(0.3, [1, 1, 1])] * 3)), rz(0.3, [1, 1, 1]), atol=1e-12)
    assert mean_samples(np.array([[0, 255], [1, 255], [1, 254]], np.uint8)).tolist() == [1, 255]
    assert mean_samples(np.array([[0.5], [1.5]], np.float32)).dtype == np.float32
    assert info("cam").average is not mean_samples and info("gaze").average is mean_samples
