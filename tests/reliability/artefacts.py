"""Artefacts for the reliability suite: one small real pipeline and ways to damage each kind of artefact.

``artefacts`` (session): a clips table (4 egogen clips, 64x64), a tokenizer directory (tiny FSQ video
tokenizer for rgb/depth, tiny VQ-VAEs for gaze/cam; untrained, real checkpoints), a second
tokenizer directory with other weights (a "foreign" one), a token DB tokenized with the first, a tiny
EgoM2P run with two checkpoints (steps 1 and 2) and a 2-second video. Everything is written by the
project's own writers, so the manifests and recorded identities are the real ones.

The damage helpers work on copies, never on the shared artefacts.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

DAMAGES = ("zeroed", "ones", "truncated")  # 64 KB of zeros, 64 KB of 0xFF, the second half cut off


def damage_file(path, how: str, size: int = 1 << 16) -> None:
    """Damage ``path`` in place: ``zeroed`` / ``ones`` overwrite ``size`` bytes in the middle, ``truncated``
    cuts off its second half."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:
        mid = max(0, len(data) // 2 - size // 2)
        end = min(len(data), mid + size)
        data[mid:end] = (b"\x00" if how == "zeroed" else b"\xff") * (end - mid)
    path.write_bytes(bytes(data))


def damage_lance(table, how: str = "data") -> None:
    """Damage a Lance table in place: ``data`` overwrites its data files, ``manifest`` its version manifests."""
    sub = {"data": "data", "manifest": "_versions"}[how]
    files = sorted(p for p in (Path(table) / sub).iterdir() if p.is_file())
    assert files, f"{table}/{sub} holds no file"
    for f in files:
        f.write_bytes(b"\x13" * 97)


@dataclass
class Artefacts:
    root: Path
    clips: Path  # clips table
    tokenizers: Path
    foreign_tokenizers: Path  # same kinds and registry, other weights
    db: Path  # token DB tokenized with ``tokenizers``
    run: Path  # EgoM2P run with checkpoints step_0000001 and step_0000002
    video: Path  # 2 s, 64x64, 30 FPS
    losses: list  # the run's two training losses
    train_overrides: list

    def copy(self, what: str, dest: Path) -> Path:
        """A private copy of one artefact (``clips``, ``tokenizers``, ``db``, ``run``, ...) under ``dest``."""
        src = getattr(self, what)
        out = Path(dest) / src.name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, out)
        return out

    def step(self, run: Path, n: int) -> Path:
        return Path(run) / "checkpoints" / f"step_{n:07d}"


def save_untrained_tokenizers(directory: Path, seed: int) -> None:
    """Real tiny tokenizer checkpoints (rgb/depth FSQ video, gaze/cam VQ-VAE) with weights drawn from ``seed``."""
    from egom2p.modalities import get_registry
    from egom2p.tokenizers import save_tokenizer
    from egom2p.tokenizers.fsq import FSQ_PRESETS, CausalVideoFSQ, FSQVideoConfig
    from egom2p.tokenizers.vqvae import VQVAE_PRESETS, SequenceVQVAE, VQVAEConfig

    torch.manual_seed(seed)
    reg = get_registry("tiny")
    fcfg = FSQVideoConfig(levels=tuple(reg["rgb"].fsq_levels), **FSQ_PRESETS["tiny"])
    video = CausalVideoFSQ(fcfg)
    for m in ("rgb", "depth"):
        save_tokenizer(directory / m, video, kind="fsq", modality=m, registry=reg, model_config=fcfg.to_dict())
    for m, ch in (("gaze", 2), ("cam", 9)):
        cfg = VQVAEConfig(in_channels=ch, frames=60, codebook_size=reg[m].vocab_size, **VQVAE_PRESETS["tiny"])
        save_tokenizer(directory / m, SequenceVQVAE(cfg), kind="vqvae", modality=m, registry=reg,
                       model_config=cfg.to_dict(), norm={"mean": [0.0] * 9, "std": [1.0] * 9} if m == "cam" else None)


TRAIN_OVERRIDES = ["model=tiny", "train.batch_size=2", "data.input_budget=32", "data.target_budget=32",
                   "train.num_workers=0", "train.tensorboard=false", "train.device=cpu", "train.ckpt_every=1",
                   "train.log_every=1"]


def build_artefacts(root: Path) -> Artefacts:
    """Write the artefacts under ``root`` (about 30-60 s on 2 busy cores)."""
    from factories import make_clip

    from egom2p.clips import write_clips
    from egom2p.tokendb import write_tokens
    from egom2p.tokenizers import load_tokenizers
    from egom2p.train import compose_config, train
    from egom2p.video import encode_h264

    torch.set_num_threads(1)
    clips = [make_clip(sequence=f"s{i}", seed=i, size=64) for i in range(4)]
    write_clips(root / "egogen.lance", clips)
    save_untrained_tokenizers(root / "tokenizers", seed=0)
    save_untrained_tokenizers(root / "foreign_tokenizers", seed=1)
    toks = load_tokenizers(root / "tokenizers")
    rows = []
    for c in clips:
        row = {"clip_id": c.clip_id, "dataset": c.dataset, "sequence": c.sequence, "split": c.split}
        for m, t in toks.items():
            row[f"tok_{m}"] = t.encode(getattr(c, m)[None])[0]
        rows.append(row)
    write_tokens(root / "tokens.lance", rows, registry=toks["rgb"].registry,
                 tokenizers={m: t.identity for m, t in toks.items()})
    res = train(compose_config([*TRAIN_OVERRIDES, "train.steps=2"]), str(root / "tokens.lance"), out=str(root / "run"))
    encode_h264(clips[0].rgb, fps=30, path=root / "walk.mp4")
    return Artefacts(root=root, clips=root / "egogen.lance", tokenizers=root / "tokenizers",
                     foreign_tokenizers=root / "foreign_tokenizers", db=root / "tokens.lance", run=root / "run",
                     video=root / "walk.mp4", losses=res["losses"], train_overrides=list(TRAIN_OVERRIDES))
