"""Factories for synthetic test data shared by the tests (clips, raw sequences, videos)."""

from __future__ import annotations

import numpy as np

from egom2p import geometry as geo
from egom2p.adapters.base import RawSequence, SequenceRef
from egom2p.clip import Clip
from egom2p.modalities import CLIP_FRAMES


def moving_pattern(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB frames [n, h, w, 3] of smooth moving gradients (codec-friendly, not noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.random(3) * 6.28
    frames = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        for c in range(3):
            frames[t, :, :, c] = 127.5 + 100 * np.sin((xx + 2 * t) / (18 + 5 * c) + (yy - t) / 23 + phase[c])
    return frames


def walk_trajectory(n: int, seed: int = 0) -> np.ndarray:
    """A smooth camera-to-world trajectory [n, 4, 4] (walking forward, turning, bobbing) in OpenCV axes."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 30.0
    yaw = 0.3 * np.sin(0.7 * t + rng.random())
    pitch = 0.1 * np.sin(1.3 * t)
    T = np.zeros((n, 4, 4))
    for i in range(n):
        cy, sy, cp, sp = np.cos(yaw[i]), np.sin(yaw[i]), np.cos(pitch[i]), np.sin(pitch[i])
        Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        T[i] = geo.make_se3(Ry @ Rx, [0.2 * np.sin(t[i]), -1.6 + 0.02 * np.sin(12 * t[i]), 1.2 * t[i]])
    return T


def make_clip(dataset: str = "egogen", sequence: str = "seq0", start: int = 0, size: int = 64, seed: int = 0,
              modalities=("rgb", "depth", "gaze", "cam")) -> Clip:
    """A valid standard clip with the requested modalities."""
    rng = np.random.default_rng(seed)
    n = CLIP_FRAMES
    rgb = moving_pattern(n, size, size, seed) if "rgb" in modalities else None
    depth = None
    if "depth" in modalities:
        depth = rng.random((n, size, size)).astype(np.float32)
        depth[:, :2, :2] = np.nan
    gaze = None
    if "gaze" in modalities:
        gaze = (0.5 + 0.2 * np.sin(np.arange(n)[:, None] / 7 + np.array([0, 1]))).astype(np.float32)
        gaze[10:13] = np.nan
    cam = geo.relative_to_first(walk_trajectory(n, seed)).astype(np.float32) if "cam" in modalities else None
    return Clip(dataset=dataset, sequence=sequence, start_frame=start, width=size, height=size,
                intrinsics=np.array([size * 0.8, size * 0.8, size / 2 - 0.5, size / 2 - 0.5]), rgb=rgb, depth=depth,
                gaze=gaze, cam=cam, depth_source="render" if depth is not None else None,
                depth_range=np.array([0.2, 2.0]) if depth is not None else None)


def make_raw_sequence(n: int = 150, width: int = 96, height: int = 72, seed: int = 0, dataset: str = "egogen",
                      sequence: str = "seqA") -> tuple[RawSequence, dict]:
    """A RawSequence of a camera in front of a fronto-parallel plane at 2 m, with known truth."""
    frames = moving_pattern(n, height, width, seed)
    T = walk_trajectory(n, seed)
    K = np.array([60.0, 60.0, (width - 1) / 2, (height - 1) / 2])
    gaze = np.stack([np.linspace(-40, width + 40, n), np.linspace(5, height - 5, n)], -1)  # leaves the image
    gaze[20:25] = np.nan
    depth = np.full((n, height, width), 2.0, np.float32)
    depth[:, :, :4] = 0.0  # invalid strip
    ref = SequenceRef(dataset=dataset, sequence=sequence, path=f"/fake/{sequence}")
    seq = RawSequence(ref=ref, num_frames=n, width=width, height=height, intrinsics=K,
                      read_frames=lambda idx: frames[idx], c2w=T, gaze_px=gaze, read_depth=lambda idx: depth[idx])
    return seq, {"frames": frames, "c2w": T, "gaze_px": gaze, "depth": depth, "K": K}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images/videos."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def make_tiny_tokenizers(directory, cams: np.ndarray, seed: int = 0):
    """Untrained tiny tokenizers (rgb/depth FSQ, gaze/cam VQ-VAE) in the checkpoint layout under ``directory``.

    ``cams``: camera trajectories [n, 60, 4, 4] for the camera tokenizer's normalisation statistics.
    """
    import torch

    from egom2p.modalities import get_registry
    from egom2p.tokenizers import save_tokenizer
    from egom2p.tokenizers.fsq import FSQ_PRESETS, CausalVideoFSQ, FSQVideoConfig
    from egom2p.tokenizers.train import cam_norm_stats
    from egom2p.tokenizers.vqvae import VQVAE_PRESETS, SequenceVQVAE, VQVAEConfig

    tiny = get_registry("tiny")
    torch.manual_seed(seed)
    net = CausalVideoFSQ(FSQVideoConfig(levels=tiny["rgb"].fsq_levels, **FSQ_PRESETS["tiny"]))
    for m in ("rgb", "depth"):
        save_tokenizer(directory / m, net, kind="fsq", modality=m, registry=tiny, model_config=net.cfg.to_dict())
    for m, ch in (("gaze", 2), ("cam", 9)):
        model = SequenceVQVAE(VQVAEConfig(in_channels=ch, codebook_size=64, **VQVAE_PRESETS["tiny"]))
        save_tokenizer(directory / m, model, kind="vqvae", modality=m, registry=tiny, model_config=model.cfg.to_dict(),
                       norm=cam_norm_stats(cams) if m == "cam" else None)
    return directory
