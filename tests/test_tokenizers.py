"""Tokenizers: FSQ codes <-> indices, causal video tokenizer, VQ-VAE overfitting, checkpoints, CLI training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from factories import make_clip

from egom2p.clips import write_clips
from egom2p.modalities import get_registry
from egom2p.tokenizers import (
    TokenizerError, VideoTokenizer, fill_invalid_gaze, load_tokenizer, load_tokenizers, save_tokenizer,
)
from egom2p.tokenizers.fsq import FSQ, FSQ_PRESETS, CausalVideoFSQ, FSQVideoConfig
from egom2p.evaluation import score_reconstructions
from egom2p.metrics import codebook_stats
from egom2p.tasks import ScoreContext
from egom2p.tokenizers.train import TrainConfig, train_sequence

torch.set_num_threads(1)  # the test machine's cores are shared; more threads only add contention
TINY = get_registry("tiny")
BASE = get_registry("base")

# Overfitting thresholds of the tiny VQ-VAE (64 codes) on 8 clips after 150 steps at lr 2e-3
# (measured: gaze MSE 1.6e-3, cam ATE 2.2 cm / RRE 0.13 deg, 70 % / 89 % of the codes used).
GAZE_MSE_MAX = 4e-3  # normalised coordinates^2; predicting each clip's mean gaze scores ~3e-2
CAM_ATE_MAX_M = 0.05  # the trajectories span ~2.4 m
USAGE_MIN = 0.5  # fraction of the codebook used on the training clips


@pytest.mark.parametrize("levels", [(8, 8, 8, 5, 5, 5), (8, 5, 5, 5)])
def test_fsq_round_trip_and_range(levels):
    fsq = FSQ(levels)
    n = int(np.prod(levels))
    idx = torch.arange(n)
    codes = fsq.indices_to_codes(idx)
    assert codes.shape == (n, len(levels)) and codes.min() >= -1 and codes.max() <= 1
    assert torch.equal(fsq.codes_to_indices(codes), idx)
    assert len({tuple(c) for c in codes.tolist()}) == n  # every index is a distinct code
    z = torch.randn(4096, len(levels)) * 4
    q, i = fsq(z)
    assert i.min() >= 0 and i.max() < n
    assert torch.allclose(fsq.indices_to_codes(i), q)
    # straight-through: gradients reach z
    z.requires_grad_(True)
    fsq.quantize(z).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_fsq_index_convention_matches_cosmos():
    """Mixed radix with the first level fastest (basis 1, 8, 64, 512, 2560, 12800)."""
    fsq = FSQ((8, 8, 8, 5, 5, 5))
    assert fsq.basis.tolist() == [1, 8, 64, 512, 2560, 12800]
    top = torch.tensor([3 / 4, 3 / 4, 3 / 4, 1.0, 1.0, 1.0])  # highest digit of each level (even levels: (L-1-L/2)/(L/2))
    assert int(fsq.codes_to_indices(top)) == 63999
    assert int(fsq.codes_to_indices(-torch.ones(6))) == 0
    assert fsq.indices_to_codes(torch.tensor(1)).tolist() == [-0.75, -1, -1, -1, -1, -1]


def test_causal_video_tokenizer_grid_and_causality():
    spec = TINY["rgb"]
    cfg = FSQVideoConfig(levels=spec.fsq_levels, **FSQ_PRESETS["tiny"])
    net = CausalVideoFSQ(cfg).eval()
    x = torch.rand(1, 3, 17, 64, 64) * 2 - 1
    idx = net.encode_indices(x)
    assert tuple(idx.shape[1:]) == spec.token_grid and idx.max() < spec.vocab_size
    x2 = x.clone()
    x2[:, :, 5:] = -1  # change the future after frame 4
    idx2 = net.encode_indices(x2)
    assert torch.equal(idx[:, :2], idx2[:, :2])  # latent 0 (frame 0) and 1 (frames 1-4) unchanged
    assert net.decode_indices(idx).shape == (1, 3, 17, 64, 64)


def test_video_tokenizer_interface_rgb_and_depth(tmp_path):
    spec = TINY["rgb"]
    net = CausalVideoFSQ(FSQVideoConfig(levels=spec.fsq_levels, **FSQ_PRESETS["tiny"]))
    for m in ("rgb", "depth"):
        save_tokenizer(tmp_path / m, net, kind="fsq", modality=m, registry=TINY, model_config=net.cfg.to_dict())
    toks = load_tokenizers(tmp_path)
    assert set(toks) == {"rgb", "depth"} and toks["rgb"].identity["sha256"] == toks["depth"].identity["sha256"]
    clip = make_clip(size=96, seed=1)  # resized to the registry's 64 x 64
    t_rgb = toks["rgb"].encode(clip.rgb[None])
    assert t_rgb.shape == (1, spec.num_tokens) and t_rgb.dtype == np.int64
    assert toks["rgb"].decode(t_rgb).shape == (1, 16, 64, 64, 3)
    t_d = toks["depth"].encode(clip.depth[None])  # NaN pixels -> 0 before encoding
    d = toks["depth"].decode(t_d)
    assert d.shape == (1, 16, 64, 64) and d.dtype == np.float32 and 0 <= d.min() and d.max() <= 1
    with pytest.raises(ValueError, match="registry mismatch"):
        load_tokenizer(tmp_path / "rgb", registry="base")


def test_expected_code_decode(tmp_path):
    """A distribution over the codes decodes as its expected code: a one-hot one exactly as its token, an even
    mix of two codes as their mean (FSQ: per channel; the VQ-VAE's cosine codebook: the mean direction)."""
    from egom2p.tokenizers.vqvae import VQVAE_PRESETS, SequenceVQVAE, VQVAEConfig

    spec = TINY["rgb"]
    torch.manual_seed(0)
    net = CausalVideoFSQ(FSQVideoConfig(levels=spec.fsq_levels, **FSQ_PRESETS["tiny"])).eval()
    seq = SequenceVQVAE(VQVAEConfig(in_channels=2, codebook_size=64, **VQVAE_PRESETS["tiny"])).eval()
    for m, model, kind in (("depth", net, "fsq"), ("gaze", seq, "vqvae")):
        save_tokenizer(tmp_path / m, model, kind=kind, modality=m, registry=TINY, model_config=model.cfg.to_dict())
    toks = load_tokenizers(tmp_path)
    clip = make_clip(size=64, seed=2)
    for m, x in (("depth", clip.depth[None]), ("gaze", clip.gaze[None])):
        tok, V = toks[m], TINY[m].vocab_size
        ids = tok.encode(x)
        onehot = np.eye(V, dtype=np.float32)[ids]  # [1, n, V]
        np.testing.assert_allclose(tok.decode_expected(onehot), tok.decode(ids), atol=1e-5)
        other = (ids + 7) % V
        mix = (onehot + np.eye(V, dtype=np.float32)[other]) / 2
        with torch.no_grad():
            if m == "depth":
                codes = (net.fsq.indices_to_codes(torch.as_tensor(ids)) + net.fsq.indices_to_codes(torch.as_tensor(other))) / 2
                video = net.decode_codes(codes.reshape(1, *spec.token_grid, -1).movedim(-1, 1)).clamp(-1, 1)
                want = tok.info.postprocess(video[:, :, :spec.frames].numpy(), None)
            else:
                e = seq.codebook.embed
                z = torch.nn.functional.normalize(e[torch.as_tensor(ids)] + e[torch.as_tensor(other)], dim=-1)
                want = tok.info.postprocess(seq.decode_latent(z).numpy(), tok.norm)
        np.testing.assert_allclose(tok.decode_expected(mix), want, atol=1e-5)
        assert not np.allclose(tok.decode_expected(mix), tok.decode(ids), atol=1e-3)

    class IdsOnly(VideoTokenizer):  # a decoder of token ids only, as a Cosmos TorchScript decoder
        def __init__(self):
            self.modality, self.identity = "rgb", {"kind": "cosmos"}
            self.backend = object()

    with pytest.raises(TokenizerError, match="rgb tokenizer \\(cosmos\\) decodes token ids only"):
        IdsOnly().decode_expected(np.zeros((1, spec.num_tokens, spec.vocab_size), np.float32))


def test_level_entropy_gap():
    from egom2p.tokenizers.fsq import level_entropy_gap

    fsq = FSQ((8, 5, 5, 5))
    g = torch.Generator().manual_seed(0)
    uniform = torch.stack([torch.randint(0, n, (20000,), generator=g).float() - n // 2 for n in fsq.levels_list], 1)
    assert float(level_entropy_gap(uniform, fsq.levels_list)) < 0.01
    collapsed = fsq.bound(torch.zeros(1000, 4))
    assert float(level_entropy_gap(collapsed, fsq.levels_list)) > 0.85
    # its gradient spreads latents that sit near one level
    z = (0.1 * torch.randn(1000, 4, generator=g)).requires_grad_()
    gap = level_entropy_gap(fsq.bound(z), fsq.levels_list)
    gap.backward()
    with torch.no_grad():
        assert float(level_entropy_gap(fsq.bound(z - 1.0 * z.grad / z.grad.abs().max()), fsq.levels_list)) < float(gap)


def test_fsq_regularisers_keep_the_codebook_in_use():
    """Measured on the demo's clips (500 steps): without them the tiny tokenizer uses 16% (RGB) and 12% (depth)
    of its 1000 codes, its four channels moving together (correlations 0.5-0.9); with decorrelation and
    entropy 0.1 each, 85% and 67%, at the same round-trip quality. Here: a few steps on four clips."""
    from egom2p.tokenizers.video_tokenizer import prepare_video

    spec = TINY["rgb"]
    x = torch.cat([prepare_video(make_clip(size=64, seed=i).rgb[None], "rgb", spec) for i in range(4)])
    used, mse = {}, {}
    for name, reg in (("off", dict(entropy=0.0, decorrelation=0.0)), ("preset", {})):
        torch.manual_seed(0)
        net = CausalVideoFSQ(FSQVideoConfig(levels=spec.fsq_levels, **{**FSQ_PRESETS["tiny"], "channels": 8, **reg}))
        opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
        for _ in range(40):
            loss, _ = net.loss(x[torch.randint(0, 4, (2,))])
            opt.zero_grad()
            loss.backward()
            opt.step()
        idx = net.eval().encode_indices(x)
        used[name], mse[name] = len(torch.unique(idx)), float(((net.decode_indices(idx) - x) ** 2).mean())
    print(used, mse)
    assert FSQ_PRESETS["tiny"]["entropy"] > 0 and FSQ_PRESETS["tiny"]["decorrelation"] > 0
    assert used["preset"] > 2 * used["off"] and mse["preset"] < 1.25 * mse["off"]


def test_fill_invalid_gaze():
    g = np.full((2, 60, 2), 0.5, np.float32)
    g[0, :, 0] = np.linspace(0, 1, 60)
    g[0, 10:20] = np.nan
    g[0, 30] = [1.5, 0.5]  # out of range -> invalid
    g[1] = np.nan
    filled, valid = fill_invalid_gaze(g)
    assert valid[0].sum() == 49 and not valid[1].any()
    np.testing.assert_allclose(filled[0, 10:20, 0], np.linspace(0, 1, 60)[10:20], atol=1e-6)
    assert np.isfinite(filled).all() and np.all(filled[1] == 0.5)


def test_metrics_on_known_errors():
    from egom2p.geometry import make_se3

    gt = np.tile(np.eye(4), (1, 60, 1, 1))
    gt[0, :, 2, 3] = np.arange(60) * 0.1
    est = gt.copy()
    est[0, 1:, 0, 3] += 0.03  # 3 cm offset on every frame after the first (frame 0 stays the identity)
    raw = score_reconstructions("cam", gt, est, ctx=ScoreContext(alignment="none"))
    assert abs(raw["cam_ate_m"] - 0.03 * np.sqrt(59 / 60)) < 1e-9 and raw["cam_rre_deg"] < 1e-6
    assert raw["alignment"] == "none"
    assert score_reconstructions("cam", gt, est)["cam_ate_m"] < raw["cam_ate_m"]  # the default Sim(3) alignment
    c, s = np.cos(np.radians(1.0)), np.sin(np.radians(1.0))
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])  # 1 degree more per frame than the truth
    est2 = np.stack([[make_se3(np.linalg.matrix_power(rz, i), [0, 0, 0]) for i in range(60)]])
    assert abs(score_reconstructions("cam", np.tile(np.eye(4), (1, 60, 1, 1)), est2)["cam_rre_deg"] - 1.0) < 1e-6
    st = codebook_stats(np.array([0, 1, 2, 3] * 10), 8)
    assert st["codebook_usage"] == 0.5 and abs(st["perplexity"] - 4.0) < 1e-9


@pytest.fixture(scope="module")
def seq_clips(tmp_path_factory):
    """8 clips with distinct gaze and camera trajectories (gaze has invalid stretches)."""
    path = tmp_path_factory.mktemp("seq") / "egogen.lance"
    clips = []
    for i in range(8):
        c = make_clip(sequence=f"s{i}", seed=i, modalities=("gaze", "cam"))
        rng = np.random.default_rng(i)
        t = np.arange(60)[:, None]
        c.gaze = (0.5 + 0.25 * np.sin(t / rng.uniform(4, 12) + rng.uniform(0, 6, 2))).astype(np.float32)
        c.gaze[rng.integers(0, 50):][:5] = np.nan
        c.gaze_valid = np.isfinite(c.gaze).all(-1)
        clips.append(c)
    write_clips(path, clips)
    return path, clips


@pytest.mark.parametrize("modality", ["gaze", "cam"])
def test_vqvae_overfits_small_set(seq_clips, tmp_path, modality):
    path, clips = seq_clips
    cfg = TrainConfig(steps=150, batch_size=8, lr=2e-3, eval_fraction=0, log_every=1000)
    metrics = train_sequence(modality, [path], tmp_path, cfg, log=lambda *_: None)
    assert metrics["codebook_usage"] >= USAGE_MIN, metrics
    if modality == "gaze":
        assert metrics["gaze_mse"] < GAZE_MSE_MAX, metrics
    else:
        assert metrics["cam_ate_m"] < CAM_ATE_MAX_M and metrics["cam_rre_deg"] < 1.0, metrics
    # the checkpoint reloads (registry verified) and gives the same reconstruction quality
    tok = load_tokenizer(tmp_path / modality, registry="tiny")
    cfg_json = json.loads((tmp_path / modality / "config.json").read_text())
    assert cfg_json["registry"] == "tiny" and cfg_json["registry_snapshot"] == TINY.snapshot()
    assert (tmp_path / modality / "eval.png").stat().st_size > 0
    x = np.stack([getattr(c, modality) for c in clips])
    toks = tok.encode(x)
    assert toks.shape == (8, 30) and toks.max() < 64
    rec = tok.decode(toks)
    if modality == "gaze":
        _, valid = fill_invalid_gaze(x)
        assert np.mean((rec - np.nan_to_num(x))[valid] ** 2) < GAZE_MSE_MAX
        assert cfg_json["norm"] is None
    else:
        assert rec.shape == (8, 60, 4, 4)
        assert np.sqrt(np.mean(np.sum((rec[:, :, :3, 3] - x[:, :, :3, 3]) ** 2, -1))) < CAM_ATE_MAX_M
        assert len(cfg_json["norm"]["mean"]) == 9  # z-normalisation statistics stored with the checkpoint
    with pytest.raises(ValueError, match="registry mismatch"):
        load_tokenizer(tmp_path / modality, registry="base")


def test_tokenizer_training_gives_back_the_callers_thread_count(seq_clips, tmp_path):
    # it trains with cfg.threads; the demo trains EgoM2P next in the same process, which must keep its own
    path, _ = seq_clips
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_sequence("gaze", [path], tmp_path, TrainConfig(steps=2, batch_size=4, threads=1, eval_fraction=0,
                                                             log_every=1000), log=lambda *_: None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_bad_checkpoints(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizers(tmp_path / "nope")
    (tmp_path / "gaze").mkdir()
    with pytest.raises(TokenizerError, match="no config.json"):
        load_tokenizers(tmp_path)
    (tmp_path / "gaze" / "config.json").write_text(json.dumps({"kind": "vqvae", "modality": "gaze"}))
    with pytest.raises(TokenizerError, match="registry name and snapshot"):
        load_tokenizers(tmp_path)


def test_tokenizer_train_cli_video(tmp_path, capsys):
    from egom2p.cli import main

    path = tmp_path / "clips.lance"
    write_clips(path, [make_clip(sequence=f"s{i}", seed=i, modalities=("rgb", "depth")) for i in range(2)])
    rc = main(["tokenizer", "train", "video", "--clips", str(path), "--out", str(tmp_path / "tok"),
               "steps=2", "batch_size=2", "log_every=1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "evaluation (video tokenizer)" in out and "rgb_psnr_db=" in out and "depth_ssim=" in out
    assert "codebook_usage=" in out and "perplexity=" in out
    toks = load_tokenizers(tmp_path / "tok")
    assert set(toks) == {"rgb", "depth"} and isinstance(toks["rgb"], VideoTokenizer)
    assert toks["rgb"].identity["sha256"] == toks["depth"].identity["sha256"]  # one network, same bytes
    assert (tmp_path / "tok" / "rgb" / "eval.png").exists()
    assert main(["tokenizer", "train", "gaze", "--clips", str(path), "--out", str(tmp_path), "nosuch=1"]) == 2
    err = capsys.readouterr().err
    assert "egom2p tokenizer train:" in err and "unknown key nosuch" in err  # one line on stderr, exit 2


def test_gpu_check_smoke_runs_on_cpu():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu" / "check_tokenizers.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    checks = {(d["check"], d["metric"]) for d in lines}
    for m in ("gaze", "cam"):
        assert (f"tokenizer_{m}_vqvae_tiny", "encode_clips_per_s") in checks
    assert ("tokenizer_video_fsq_tiny", "encode_clips_per_s") in checks
    assert all(set(d) >= {"check", "metric", "value", "unit"} and d["value"] > 0 for d in lines)


def test_sequence_augmentation_gives_valid_clips():
    from egom2p.geometry import relative_to_first
    from egom2p.tokenizers.train import augment_sequences

    c = make_clip(seed=3, modalities=("gaze", "cam"))
    cam = c.cam[None].astype(np.float64)
    aug = augment_sequences("cam", cam)
    assert aug.shape == (4, 60, 4, 4)
    np.testing.assert_allclose(aug[0], cam[0])
    R = aug[..., :3, :3]
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-6)
    np.testing.assert_allclose(aug[:, 0], np.broadcast_to(np.eye(4), (4, 4, 4)), atol=1e-6)  # frame 0 = identity
    # mirrored: x of every position flips, height and forward motion stay
    np.testing.assert_allclose(aug[1, :, :3, 3], cam[0, :, :3, 3] * [-1, 1, 1], atol=1e-6)
    # reversed: the same path walked backwards, relative to its new first frame
    np.testing.assert_allclose(aug[2], relative_to_first(cam[0, ::-1]), atol=1e-6)
    step_fwd = np.linalg.inv(cam[0, 10]) @ cam[0, 11]
    step_rev = np.linalg.inv(aug[2, 60 - 12]) @ aug[2, 60 - 11]  # frames 11 -> 10 of the original
    np.testing.assert_allclose(step_rev, np.linalg.inv(step_fwd), atol=1e-6)
    g = np.stack([c.gaze, c.gaze])
    ag = augment_sequences("gaze", g)
    assert ag.shape == (8, 60, 2)
    np.testing.assert_allclose(ag[2, :, 0], 1 - g[0, :, 0])
    np.testing.assert_allclose(ag[4], g[0, ::-1])


def test_vqvae_velocity_term_penalises_jitter():
    from egom2p.tokenizers.vqvae import SequenceVQVAE, VQVAEConfig

    torch.manual_seed(0)
    x = torch.cumsum(torch.randn(2, 60, 9) * 0.1, 1)
    for vel in (0.0, 5.0):
        m = SequenceVQVAE(VQVAEConfig(in_channels=9, dim=32, depth=1, heads=2, codebook_size=16, velocity=vel)).eval()
        loss, st = m.loss(x)
        assert ("vel" in st) == (vel > 0)
        if vel:
            rec, _, commit = m(x)
            dv = (rec[:, 1:] - rec[:, :-1]) - (x[:, 1:] - x[:, :-1])
            expect = st["rec"] + 0.25 * commit.item() + vel * (dv**2).mean().item()
            assert loss.item() == pytest.approx(expect, rel=1e-5)
