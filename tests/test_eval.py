"""`egom2p eval`: clip selection from real clips tables, metrics + baselines tables, JSON/markdown, CLI errors.

The harness is tested here with an oracle runner (the model replaced by the ground truth plus known
noise), so each number is predictable; the end-to-end run with a trained tiny model is in
tests/test_tasks_e2e.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from egom2p.clips import write_clips
from egom2p.commands import eval as E
from egom2p.modalities import get_registry
from egom2p.tasks import TaskInputError, TaskRunner, get_task
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


class OracleRunner(TaskRunner):
    """Returns the ground truth of the clips it was given (plus noise) instead of generating."""

    def __init__(self, clips, noise=0.0):
        super().__init__(model=None, registry=get_registry("tiny"), tokenizers={"rgb": _QuantTokenizer()})
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


class _QuantTokenizer:
    """A stand-in rgb 'tokenizer' for the round-trip row: keeps the token frames, quantised to 16 levels."""

    def encode(self, x):
        return (np.asarray(x)[:, token_frame_indices()] // 16).astype(np.int64)

    def decode(self, t):
        return (np.asarray(t) * 16 + 8).astype(np.uint8)


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


def test_camera_table_with_baselines(clips_table, tmp_path):
    clips, _ = E.select_clips([clips_table], "camera")
    rep = E.evaluate(OracleRunner(clips, noise=0.005), "camera", clips, progress=False)
    model, static, cv = rep.row("EgoM2P"), rep.row("static pose"), rep.row("constant velocity")
    assert model["ate"] < 0.02 < static["ate"]
    assert model["clips"] == 3 and model["time_s"] == pytest.approx(0.01)
    assert cv["ate"] > 0 and cv["rre"] >= 0
    assert rep.rows[1]["ate"] == pytest.approx(np.mean([E.M.camera_errors_static(c.cam, "sim3").ate for c in clips]))
    table = E.format_table(rep)
    assert "ATE (m) ↓" in table and "static pose" in table and "constant velocity" in table
    assert any("Sim(3)" in n for n in rep.notes)
    paths = E.write_report(rep, tmp_path)
    data = json.loads(open(paths["json"]).read())
    assert data["task"] == "camera" and data["settings"]["alignment"] == "sim3" and len(data["rows"]) == 3
    md = open(paths["markdown"]).read()
    assert md.count("\n|---|") == 1 and "| EgoM2P |" in md


def test_gaze_and_depth_tables(clips_table):
    clips, _ = E.select_clips([clips_table], "gaze")
    rep = E.evaluate(OracleRunner(clips, noise=0.01), "gaze", clips, progress=False)
    assert rep.row("EgoM2P")["mse"] == pytest.approx(1e-4, rel=1e-3)
    assert rep.row("centre prior")["mse"] > rep.row("EgoM2P")["mse"]

    clips, _ = E.select_clips([clips_table], "depth")
    rep = E.evaluate(OracleRunner(clips), "depth", clips, progress=False)
    m, base = rep.row("EgoM2P"), rep.row("per-clip mean depth")
    assert m["abs_rel"] < 1e-4 and m["delta1"] == pytest.approx(1.0)
    assert base["abs_rel"] > 0.1 and base["delta1"] < m["delta1"]
    assert any("inverse depth" in n for n in rep.notes)


def test_rgb_table_with_and_without_perceptual_weights(clips_table, tmp_path):
    from tests.test_metrics import _TinyI3D, _write_tiny_lpips

    clips, _ = E.select_clips([clips_table], "rgb")
    rep = E.evaluate(OracleRunner(clips), "rgb", clips, weights_dir=tmp_path / "none", progress=False)
    assert rep.row("EgoM2P")["psnr"] > 60 and rep.row("EgoM2P")["ssim"] == pytest.approx(1.0)
    assert rep.row("EgoM2P")["lpips"] is None and "n/a" in E.format_table(rep)
    assert any("LPIPS not computed" in n and "alex.pth" in n for n in rep.notes)
    _write_tiny_lpips(tmp_path / "w")
    _TinyI3D.save(tmp_path / "w" / "fvd" / "i3d_torchscript.pt")
    rep = E.evaluate(OracleRunner(clips), "rgb", clips, weights_dir=tmp_path / "w", progress=False)
    up = rep.row("tokenizer round trip (upper bound)")
    assert rep.row("EgoM2P")["lpips"] == pytest.approx(0.0, abs=1e-6) and up["lpips"] > 0
    assert rep.row("EgoM2P")["fvd"] == pytest.approx(0.0, abs=1e-3) and up["fvd"] > 0
    assert up["psnr"] < rep.row("EgoM2P")["psnr"]


def test_eval_cli_reports_bad_input(clips_table, tmp_path, capsys):
    from egom2p.cli import main

    rc = main(["eval", "camera", "--ckpt", str(tmp_path / "missing"), "--tokenizers", str(tmp_path),
               "--clips", str(clips_table)])
    assert rc == 2
    assert "missing: checkpoint not found" in capsys.readouterr().err  # one line on stderr
